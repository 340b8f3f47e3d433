"""A native backend that fails on a schedule, around the runtime's real one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dspex.backends._spec import Backend, CallOptions, ModuleSpec
from dspex.prediction import Prediction
from dspex.runtime import Runtime


class Faulty:
    """Raises ``fault(n)`` on the n-th call (1-based) when it returns an exception."""

    def __init__(self, inner: Backend, fault: Callable[[int], BaseException | None]):
        self.inner = inner
        self.name = inner.name
        self.fault = fault
        self.calls = 0

    @property
    def module_types(self) -> frozenset[str]:
        return self.inner.module_types

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    async def create(self, spec: ModuleSpec) -> Any:
        return await self.inner.create(spec)

    async def execute(
        self, instance: Any, inputs: Mapping[str, Any], options: CallOptions
    ) -> Prediction:
        self.calls += 1
        error = self.fault(self.calls)
        if error is not None:
            raise error
        return await self.inner.execute(instance, inputs, options)


def break_native(rt: Runtime, fault: Callable[[int], BaseException | None]) -> Faulty:
    faulty = Faulty(rt.backends["native"], fault)
    rt.backends["native"] = faulty
    return faulty
