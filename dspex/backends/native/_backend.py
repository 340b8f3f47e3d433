"""The native implementation behind the module protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.native._predict import NativeChainOfThought, NativePredict
from dspex.config import Implementation
from dspex.errors import ConfigError
from dspex.lm import LMClient
from dspex.prediction import Prediction

_MODULES: dict[str, type[NativePredict]] = {
    "Predict": NativePredict,
    "ChainOfThought": NativeChainOfThought,
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

    async def create(self, spec: ModuleSpec) -> NativePredict:
        """Build the native module of ``spec``; prompt templates are built here, once."""
        if spec.lm is None:
            raise ConfigError(f"{spec.module_type} needs an LM: pass lm= or set Runtime(lm=...)")
        if spec.signature is None:
            raise ConfigError(f"{spec.module_type} needs a signature")
        module = _MODULES[spec.module_type](
            spec.signature, lm=spec.lm, client=self.client, demos=spec.demos, adapter=spec.adapter
        )
        module.adapter.system_message(module.signature)  # build and cache the templates now
        return module

    async def execute(
        self, instance: NativePredict, inputs: Mapping[str, Any], options: CallOptions
    ) -> Prediction:
        """Run one call of a native module (the module actor has checked the inputs)."""
        return await instance.run(dict(inputs), options)
