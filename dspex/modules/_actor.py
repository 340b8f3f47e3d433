"""ModuleActor: one module instance, owning its spec and its backend instances.

Calls run concurrently in tasks the actor owns (deferred replies, at most ``max_concurrency`` at
once); state changes go through the mailbox one at a time. An unexpected exception in native code
crashes the actor (its supervisor restarts it); expected failures (LM, parse, timeout) fall back to
dspy when the configuration allows it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace

from dspex import telemetry
from dspex.actors import NOREPLY, Actor, Caller
from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.native import check_inputs
from dspex.config import Implementation
from dspex.errors import DSPexError, InputError, LMError, ModuleError, ParseError, SignatureError
from dspex.errors import Timeout as DSPexTimeout
from dspex.lm._config import api_key_of, redact
from dspex.prediction import Prediction
from dspex.routing import Outcome, RouteReason, ShadowResult, choose

if TYPE_CHECKING:
    from dspex.runtime import Runtime

log = logging.getLogger("dspex.modules")

#: Failures that are the LM's or the reply's, not a bug: they never crash the actor, and with
#: ``allow_fallback`` a native call that hits one is re-run on dspy.
EXPECTED = (LMError, ParseError, DSPexTimeout)


#: Inputs some module types take besides their signature's input fields.
_EXTRA_INPUTS = {"MultiChainComparison": frozenset({"completions"})}


class SpecBox:
    """The module's current spec, kept outside the actor so a restart starts from the latest
    demos and settings (as OTP keeps state that must survive a crash in ETS)."""

    __slots__ = ("spec",)

    def __init__(self, spec: ModuleSpec):
        self.spec = spec


class Execute(msgspec.Struct, frozen=True):
    """Run the module on ``inputs``; ``implementation`` forces one for this call.

    ``crashed`` is set on the retry of a call whose actor crashed under it (native code failed):
    unless native is forced, the retry runs on dspy when fallback is allowed.
    """

    inputs: Mapping[str, Any]
    options: CallOptions
    implementation: Implementation | None = None
    trace_context: Any = None
    crashed: str | None = None
    key: str | None = None


class Info(msgspec.Struct, frozen=True):
    """Request the module's description."""


class SetDemos(msgspec.Struct, frozen=True):
    """Replace the module's demos (kept across restarts)."""

    demos: tuple[dict[str, Any], ...]


class ModuleInfo(msgspec.Struct, frozen=True):
    """What ``await module.info()`` returns."""

    module_type: str
    signature: str | None
    implementations: tuple[str, ...]
    forced: str | None
    native_available: bool
    native_unsupported: str | None
    circuit: str
    demos: int
    in_flight: int
    max_concurrency: int
    adapter: str
    lm: str | None

    def to_dict(self) -> dict[str, Any]:
        """The description as plain data that ``json.dumps`` accepts (tuples become lists)."""
        plain: dict[str, Any] = msgspec.to_builtins(self)
        return plain


class ModuleActor(Actor):
    """Owns one module's spec and backend instances; runs its calls."""

    async def init(self, *args: Any) -> None:
        box, forced, rt, label = args
        self.box: SpecBox = box
        self.forced: Implementation | None = forced
        self.rt: Runtime = rt
        spec = box.spec
        self.module_type = spec.module_type
        self.label: str = label  # what metrics and spans call it: the type, or a wrap's name
        registry = rt.routing.snapshot.registry
        self.available = registry.available_implementations(self.module_type)
        self.native_available = "native" in self.available
        self.extra_inputs = _EXTRA_INPUTS.get(self.module_type, frozenset())
        self.instances: dict[str, Any] = {}
        self.native_unsupported: str | None = None
        self.in_flight = 0
        self.shadows_in_flight = 0
        self.slots = asyncio.Semaphore(rt.config.max_concurrency)
        await self._build(forced)

    async def _build(self, forced: Implementation | None) -> None:
        """Build what the module will serve on: native now (cheap); dspy now only if forced,
        otherwise on first use (importing DSPy takes seconds)."""
        self.instances.clear()
        spec = self.box.spec
        if self.native_available and forced != "dspy":
            try:
                self.instances["native"] = await self.rt.backends["native"].create(spec)
            except SignatureError as exc:
                if forced == "native" or "dspy" not in self.available:
                    raise
                self.native_unsupported = str(exc)  # e.g. a dspy.Type field: serve on dspy
        if forced == "dspy" or not self.native_available:
            await self._instance("dspy")

    async def _instance(self, impl: Implementation) -> Any:
        instance = self.instances.get(impl)
        if instance is None:
            instance = self.instances[impl] = await self.rt.backends[impl].create(self.box.spec)
        return instance

    # -- calls ----------------------------------------------------------------------------------

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if isinstance(msg, Execute):
            try:
                inputs = self._check(msg.inputs)
            except DSPexError as exc:
                caller.fail(exc)
                return NOREPLY
            await self.slots.acquire()  # at max_concurrency the mailbox waits: backpressure
            self.in_flight += 1
            task = self.start_task(self._run(msg, inputs, caller))
            caller.on_abandon(task.cancel)  # deadline or cancellation: stop the work, LM included
            return NOREPLY
        if isinstance(msg, SetDemos):
            self.box.spec = msgspec.structs.replace(self.box.spec, demos=msg.demos)
            await self._build(self.forced)
            return len(msg.demos)
        if isinstance(msg, Info):
            return self._info()
        return await super().handle_call(msg, caller)

    def _check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        spec = self.box.spec
        if self.module_type == "Parallel":
            batch = inputs.get("batch") if isinstance(inputs, Mapping) else None
            if not isinstance(batch, (list, tuple)) or not all(
                isinstance(i, Mapping) for i in batch
            ):
                raise InputError("Parallel takes batch=[{...}, ...]: a list of input mappings")
            return {"batch": list(batch)}
        if spec.signature is None:  # a wrapped dspy.Module: its own forward checks its inputs
            return dict(inputs)
        extra = {
            k: inputs[k] for k in self.extra_inputs if isinstance(inputs, Mapping) and k in inputs
        }
        return {**check_inputs(spec.signature, inputs), **extra}

    def _choose(self, msg: Execute) -> tuple[Implementation, RouteReason]:
        forced = msg.implementation or self.forced
        if msg.crashed is not None and forced is None and self._can_fall_back("native"):
            return "dspy", "retry_after_crash"
        snapshot = self.rt.routing.snapshot
        impl, reason = choose(snapshot, self.module_type, forced, self.rt.loop.time(), key=msg.key)
        if impl == "native" and self.native_unsupported is not None:
            return "dspy", "only"
        return impl, reason

    async def _run(self, msg: Execute, inputs: dict[str, Any], caller: Caller) -> None:
        start = time.perf_counter()
        impl, reason = self._choose(msg)
        served, fallback_reason, error = impl, "", ""
        span = telemetry.tracer.start_span("dspex.route", context=msg.trace_context)
        recording = span.is_recording()  # False without an SDK: then spans cost next to nothing
        token = otel_context.attach(trace.set_span_in_context(span)) if recording else None
        try:
            pred = await self._attempt(impl, inputs, msg.options, reason == "probe", start)
            if msg.crashed is not None and impl == "dspy":
                fallback_reason = "NativeCrash"
                pred = pred.with_served("dspy", fallback_reason=f"native crashed: {msg.crashed}")
            caller.reply(pred)
            self._maybe_shadow(impl, inputs, msg.options, pred, time.perf_counter() - start)
        except EXPECTED as err:
            error = type(err).__name__
            if not self._can_fall_back(impl):
                caller.fail(err)
                return
            served, fallback_reason = "dspy", error
            telemetry.fallbacks.add(1, {telemetry.OPERATION: self.label})
            try:
                pred = await self._attempt("dspy", inputs, msg.options, False, time.perf_counter())
            except DSPexError as second:
                error = type(second).__name__
                caller.fail(second)
                return
            error = ""
            caller.reply(pred.with_served("dspy", fallback_reason=f"{fallback_reason}: {err}"))
        except DSPexError as err:  # the caller's mistake (input, config): not the module's fault
            error = type(err).__name__
            caller.fail(err)
        except Exception as bug:
            error = type(bug).__name__
            if recording:
                span.record_exception(bug)
            if impl == "native":
                raise  # let it crash: the supervisor restarts us, the caller retries once
            caller.fail(ModuleError(f"{self.label} on dspy failed: {bug!r}"))
        finally:
            self.in_flight -= 1
            self.slots.release()
            if token is not None:
                otel_context.detach(token)
                span.set_attributes(
                    {
                        telemetry.OPERATION: self.label,
                        telemetry.NATIVE_AVAILABLE: self.native_available,
                        telemetry.ROUTE_REASON: reason,
                        telemetry.IMPLEMENTATION: served,
                        telemetry.FALLBACK: bool(fallback_reason),
                    }
                )
                if fallback_reason:
                    span.set_attribute(telemetry.FALLBACK_REASON, fallback_reason)
                if error:
                    span.set_attribute(telemetry.ERROR_TYPE, error)
            span.end()

    def _maybe_shadow(
        self,
        served: Implementation,
        inputs: dict[str, Any],
        options: CallOptions,
        pred: Prediction,
        seconds: float,
    ) -> None:
        """Sample this call for a shadow run on the other implementation, within the caps."""
        shadow = self.rt.config.shadow.get(self.module_type)
        other: Implementation = "dspy" if served == "native" else "native"
        if (
            shadow is None
            or self.shadows_in_flight >= shadow.max_in_flight
            or other not in self.available
            or (other == "native" and self.native_unsupported is not None)
            or random.random() >= shadow.rate
        ):
            return
        self.shadows_in_flight += 1
        self.start_task(self._shadow(other, inputs, options, pred, seconds))

    async def _shadow(
        self,
        impl: Implementation,
        inputs: dict[str, Any],
        options: CallOptions,
        primary: Prediction,
        primary_seconds: float,
    ) -> None:
        """Run ``impl`` on the same inputs and report how its outputs compare. Whatever happens
        here never reaches the caller (already answered) and never crashes the actor."""
        start = time.perf_counter()
        output: dict[str, Any] | None = None
        error: str | None = None
        try:
            shadow = await self.rt.backends[impl].execute(
                await self._instance(impl), inputs, options
            )
            output = shadow.to_dict()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.shadows_in_flight -= 1
        seconds = time.perf_counter() - start
        expected = primary.to_dict()
        fields = {
            k: output is not None and k in output and output[k] == v for k, v in expected.items()
        }
        secret = api_key_of(self.box.spec.lm)
        result = ShadowResult(
            module_type=self.module_type,
            primary=primary.implementation,
            fields=fields,
            primary_ms=primary_seconds * 1000,
            shadow_ms=seconds * 1000,
            inputs=redact(inputs, secret),
            primary_output=redact(expected, secret),
            shadow_output=redact(output, secret) if output is not None else None,
            shadow_error=redact(error, secret),
        )
        self._report(result)

    def _can_fall_back(self, impl: Implementation) -> bool:
        return impl == "native" and self.rt.config.allow_fallback and "dspy" in self.available

    async def _attempt(
        self,
        impl: Implementation,
        inputs: dict[str, Any],
        options: CallOptions,
        probe: bool,
        start: float,
    ) -> Prediction:
        """One try on one implementation, reported to the router and to the metrics."""
        ok = fell_back = False
        span = telemetry.tracer.start_span("dspex.module.execute")
        token = (
            otel_context.attach(trace.set_span_in_context(span)) if span.is_recording() else None
        )
        try:
            instance = self.instances.get(impl) or await self._instance(impl)
            pred = await self.rt.backends[impl].execute(instance, inputs, options)
            ok = True
            return pred
        except EXPECTED:
            fell_back = self._can_fall_back(impl)
            raise
        finally:
            duration = time.perf_counter() - start
            self._report(Outcome(self.label, impl, duration, ok, fell_back, probe))
            attrs = {telemetry.OPERATION: self.label, telemetry.IMPLEMENTATION: impl}
            telemetry.calls.add(1, {**attrs, telemetry.OUTCOME: "ok" if ok else "error"})
            telemetry.call_duration.record(duration, attrs)
            if token is not None:
                otel_context.detach(token)
                span.set_attributes(attrs)
            span.end()

    def _report(self, outcome: Outcome | ShadowResult) -> None:
        router = self.rt.whereis("dspex.router")
        if router is None:
            return
        try:
            router.cast(outcome)
        except DSPexError:  # the router is overloaded: metrics may drop, calls never do
            log.debug("router mailbox full; dropped an outcome")

    async def terminate(self, reason: object) -> None:
        """Drain: let the calls in flight finish (the supervisor's shutdown timeout, the
        runtime's ``drain_timeout``, bounds this; then they are cancelled), unless the runtime
        is shutting down by force."""
        if self.rt.forcing:
            self.cancel_tasks()
        await self.wait_tasks()

    def _info(self) -> ModuleInfo:
        spec = self.box.spec
        snapshot = self.rt.routing.snapshot
        return ModuleInfo(
            module_type=self.module_type,
            signature=spec.signature.signature if spec.signature is not None else None,
            implementations=self.available,
            forced=self.forced,
            native_available=self.native_available and self.native_unsupported is None,
            native_unsupported=self.native_unsupported,
            circuit=snapshot.circuit_state(self.module_type, self.rt.loop.time()),
            # a wrapped program's predictors carry their own demos (a compiled program's)
            demos=self.instances["dspy"].demos if spec.program is not None else len(spec.demos),
            in_flight=self.in_flight,
            max_concurrency=self.rt.config.max_concurrency,
            adapter=spec.adapter,
            lm=spec.lm.model if spec.lm is not None else None,
        )
