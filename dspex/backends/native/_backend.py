"""The native implementation behind the module protocol."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any

from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.native._best_of_n import NativeBestOfN
from dspex.backends.native._module import NativeBuilder, NativeModule, parts, predictor
from dspex.backends.native._multi_chain import NativeMultiChainComparison
from dspex.backends.native._parallel import NativeParallel
from dspex.backends.native._react import NativeReAct
from dspex.backends.native._refine import NativeRefine
from dspex.config import Implementation
from dspex.lm import LMClient
from dspex.prediction import Prediction


def _predictor(spec: ModuleSpec, client: LMClient) -> NativeModule:
    return predictor(spec, client)


_MODULES: dict[str, NativeBuilder] = {
    "Predict": _predictor,
    "ChainOfThought": _predictor,
    "ReAct": NativeReAct.from_spec,
    "MultiChainComparison": NativeMultiChainComparison.from_spec,
    "BestOfN": NativeBestOfN.from_spec,
    "Refine": NativeRefine.from_spec,
    "Parallel": NativeParallel.from_spec,
}

#: Module types with a native implementation.
NATIVE_MODULE_TYPES = frozenset(_MODULES)


class NativeBackend:
    """Builds native modules that share one runtime-wide LM client (and connection pool)."""

    name: Implementation = "native"

    def __init__(self, client: LMClient):
        self.client = client

    @property
    def module_types(self) -> frozenset[str]:
        """The module types implemented natively."""
        return NATIVE_MODULE_TYPES

    def info(self) -> dict[str, Any]:
        """The implementation and its module types."""
        return {"implementation": "native", "module_types": sorted(NATIVE_MODULE_TYPES)}

    async def create(self, spec: ModuleSpec) -> NativeModule:
        """Build the native module of ``spec``; prompt templates are built here, once."""
        parts(spec)  # a ConfigError without an LM or a signature
        return _MODULES[spec.module_type](spec, self.client)

    def execute(
        self, instance: NativeModule, inputs: Mapping[str, Any], options: CallOptions
    ) -> Coroutine[Any, Any, Prediction]:
        """Run one call of a native module (the module actor has checked the inputs); the
        module's own coroutine, with no frame of this method's held while it runs."""
        return instance.run(dict(inputs), options)
