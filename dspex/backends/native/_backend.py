"""The native implementation behind the module protocol."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any

from dspex._kinds import KINDS
from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.native._module import NativeModule, parts
from dspex.config import Implementation
from dspex.lm import LMClient
from dspex.prediction import Prediction

#: Module types with a native implementation.
NATIVE_MODULE_TYPES = frozenset(kind.name for kind in KINDS.values() if kind.native is not None)


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
        """Build the native module of ``spec``; prompt templates are built here, once.

        ConfigError without an LM or a signature, or for a type with no native implementation."""
        parts(spec)
        return KINDS[spec.module_type].native_builder()(spec, self.client)

    def release(self, instance: NativeModule) -> None:
        """Nothing to do: a native module is garbage once unreferenced."""

    def execute(
        self, instance: NativeModule, inputs: Mapping[str, Any], options: CallOptions
    ) -> Coroutine[Any, Any, Prediction]:
        """Run one call of a native module (the module actor has checked the inputs); the
        module's own coroutine, with no frame of this method's held while it runs."""
        return instance.run(dict(inputs), options)
