"""Fault injection into a running Runtime: make an implementation crash, fail or hang.

``inject_faults(runtime, ...)`` wraps one implementation's backend so that its calls crash (an
unexpected exception, as a bug would raise: before the LM request, or after it as a bug in
parsing the reply would), fail (an ``LMError``) or hang, on chosen call numbers or with a
probability, from a seeded random generator so a failing run can be replayed. A crash fails that
call's attempt only: the module actor reports it, rebuilds its native instance and re-runs the
call on dspy when fallback is allowed. To crash the module actor itself, as when its own state is
broken, ``crash_actor_on`` makes the rebuild fail too. It returns the injector; ``remove()``
restores the real backend (it is also a context manager).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dspex.backends._spec import Backend, CallOptions, ModuleSpec
from dspex.config import Implementation, implementation_name
from dspex.errors import ConfigError, LMError
from dspex.prediction import Prediction

if TYPE_CHECKING:
    from dspex.runtime import Runtime


class InjectedCrash(Exception):
    """The exception an injected crash raises: stands in for a bug in an implementation."""


class FaultInjector:
    """A backend around the real one that injects faults; see :func:`inject_faults`."""

    def __init__(
        self,
        runtime: Runtime,
        implementation: Implementation,
        *,
        crash_on: Iterable[int],
        crash_after_request_on: Iterable[int],
        crash_actor_on: Iterable[int],
        fail_on: Iterable[int],
        hang_on: Iterable[int],
        crash_rate: float,
        fail_rate: float,
        hang_rate: float,
        module_types: Iterable[str] | None,
        seed: int | None,
    ):
        for name, rate in (
            ("crash_rate", crash_rate),
            ("fail_rate", fail_rate),
            ("hang_rate", hang_rate),
        ):
            if not 0 <= rate <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {rate!r}")
        if crash_rate + fail_rate + hang_rate > 1:
            raise ConfigError("crash_rate + fail_rate + hang_rate must be at most 1")
        self.runtime = runtime
        self.name = implementation
        self.inner: Backend = runtime.backends[implementation]
        self.crash_on, self.fail_on, self.hang_on = set(crash_on), set(fail_on), set(hang_on)
        self.crash_after_request_on = set(crash_after_request_on)
        self.crash_actor_on = set(crash_actor_on)
        self.broken = False  # the next build fails: a crash_actor_on fault broke the module
        self.rates = (crash_rate, fail_rate, hang_rate)
        self.only = frozenset(module_types) if module_types is not None else None
        self.random = random.Random(seed)
        self.calls = 0
        self.injected = {
            "crash": 0,
            "crash_after_request": 0,
            "crash_actor": 0,
            "fail": 0,
            "hang": 0,
        }
        runtime.backends[implementation] = self

    # -- the backend protocol -----------------------------------------------------------------

    @property
    def module_types(self) -> frozenset[str]:
        """The module types of the wrapped implementation."""
        return self.inner.module_types

    def info(self) -> dict[str, Any]:
        """The wrapped implementation's info, and the faults injected so far."""
        return {**self.inner.info(), "faults": dict(self.injected)}

    def release(self, instance: Any) -> None:
        """Release with the real backend."""
        self.inner.release(instance)

    async def create(self, spec: ModuleSpec) -> Any:
        """Build with the real backend, unless a ``crash_actor_on`` fault broke the module: then
        this build (the actor's rebuild after the crash) fails, once."""
        if self.broken:
            self.broken = False
            raise InjectedCrash("injected failure to rebuild the module after its crash")
        return await self.inner.create(spec)

    async def execute(
        self, instance: Any, inputs: Mapping[str, Any], options: CallOptions
    ) -> Prediction:
        """Count the call, inject the scheduled fault if any, else run the real backend."""
        module_type = getattr(instance, "module_type", None)
        if self.only is None or module_type in self.only:
            self.calls += 1
            n = self.calls
            fault = self._pick(n)
            if fault is not None:
                self.injected[fault] += 1
                if fault == "crash":
                    raise InjectedCrash(f"injected crash on call {n}")
                if fault == "fail":
                    raise LMError(f"injected LM failure on call {n}", status=503)
                if fault == "crash_after_request":
                    await self.inner.execute(instance, inputs, options)
                    raise InjectedCrash(f"injected crash after the LM request of call {n}")
                if fault == "crash_actor":
                    self.broken = True
                    raise InjectedCrash(f"injected crash breaking the module on call {n}")
                await asyncio.Event().wait()  # hang until cancelled
        return await self.inner.execute(instance, inputs, options)

    def _pick(self, n: int) -> str | None:
        if n in self.crash_on:
            return "crash"
        if n in self.crash_after_request_on:
            return "crash_after_request"
        if n in self.crash_actor_on:
            return "crash_actor"
        if n in self.fail_on:
            return "fail"
        if n in self.hang_on:
            return "hang"
        if any(self.rates):
            roll = self.random.random()
            crash, fail, hang = self.rates
            if roll < crash:
                return "crash"
            if roll < crash + fail:
                return "fail"
            if roll < crash + fail + hang:
                return "hang"
        return None

    # -- removal --------------------------------------------------------------------------------

    def remove(self) -> None:
        """Put the real backend back."""
        if self.runtime.backends.get(self.name) is self:
            self.runtime.backends[self.name] = self.inner

    def __enter__(self) -> FaultInjector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def inject_faults(
    runtime: Runtime,
    implementation: str = "native",
    *,
    crash_on: Iterable[int] = (),
    crash_after_request_on: Iterable[int] = (),
    crash_actor_on: Iterable[int] = (),
    fail_on: Iterable[int] = (),
    hang_on: Iterable[int] = (),
    crash_rate: float = 0.0,
    fail_rate: float = 0.0,
    hang_rate: float = 0.0,
    module_types: Iterable[str] | None = None,
    seed: int | None = None,
) -> FaultInjector:
    """Make ``implementation``'s calls (1-based, counted across modules of ``module_types``)
    crash, fail with an LMError or hang, on the given call numbers or with the given rates.

    ``crash_on`` / ``crash_rate`` raise :class:`InjectedCrash` before the call's LM request;
    ``crash_after_request_on`` makes the LM request, then raises it, as a bug in parsing the
    reply would (so the LM sees the request). ``crash_actor_on`` raises it before the request
    and makes the module's rebuild of its native instance fail too: the module actor's own
    state is broken, so the actor crashes and its supervisor restarts it (the calls it was
    running are sent once more to the new actor). ``fail_on`` / ``fail_rate`` raise an
    ``LMError`` with status 503; ``hang_on`` / ``hang_rate`` wait until the call is cancelled.
    ``injected`` counts the faults of each kind. ConfigError for a rate outside [0, 1] or
    rates summing past 1."""
    return FaultInjector(
        runtime,
        implementation_name(implementation),
        crash_on=crash_on,
        crash_after_request_on=crash_after_request_on,
        crash_actor_on=crash_actor_on,
        fail_on=fail_on,
        hang_on=hang_on,
        crash_rate=crash_rate,
        fail_rate=fail_rate,
        hang_rate=hang_rate,
        module_types=module_types,
        seed=seed,
    )
