"""ModuleActor: one module instance, owning its spec and its backend instances.

Calls run concurrently in tasks of the runtime's :class:`~dspex.TaskSupervisor` that the actor
owns (``async_nolink``; deferred replies, at most ``max_concurrency`` at once); state changes go
through the mailbox one at a time. A call's failure is that call's alone: an unexpected
exception in native code is
reported to the router, the native instance is rebuilt and the call re-run on dspy when fallback
is allowed; native's failures that dspy could get past (a bad reply, a server error, a timeout)
are re-run on dspy too, in one attempt. The actor itself crashes only when its own state is
broken (the rebuild fails); its supervisor then restarts it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace

from dspex import telemetry
from dspex._budget import CallSpend
from dspex._kinds import KINDS, ModuleKind
from dspex.actors import NOREPLY, Actor, Caller, Down, TaskRef
from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.native import check_inputs
from dspex.cache import CALL_CACHE
from dspex.config import Budget, Implementation, TwoStep
from dspex.errors import (
    ActorExited,
    BudgetExceeded,
    ConfigError,
    DSPexError,
    InputError,
    LMConnectionError,
    LMError,
    MailboxFull,
    ModuleError,
    ParseError,
    SignatureError,
    Timeout,
    Unavailable,
)
from dspex.lm._client import CALL_DEADLINE, CALL_SPEND
from dspex.lm._config import api_key_of, redact
from dspex.lm._prices import price_of
from dspex.prediction import Prediction
from dspex.routing import (
    ClaimProbe,
    NativeCrashed,
    Outcome,
    ProbeAbandoned,
    RouteReason,
    ShadowResult,
    choose,
)
from dspex.streaming._call import STREAM, CallStream

if TYPE_CHECKING:
    from dspex.actors import ActorRef
    from dspex.backends._spec import Backend
    from dspex.config import Config, Shadow
    from dspex.routing import RoutingSnapshot, SnapshotCell
    from dspex.signature import Signature
    from dspex.supervision import TaskSupervisorRef

log = logging.getLogger("dspex.modules")

_NO_USAGE: dict[str, int] = {}  # an attempt that failed: no tokens known (shared, never written)


def dspy_could_succeed(error: Exception) -> str | None:
    """Why a native attempt that failed with ``error`` is worth one attempt on dspy (the error's
    kind, for ``fallback_reason``), or None when dspy would fail the same way.

    Worth it: a crash in native code (``NativeCrash``), a reply native could not parse, and
    transient transport failures native's own retries did not get past: timeouts, connection
    errors, HTTP 408 and 5xx, and a body that is not a chat completion. Not: HTTP 429 (native's
    client already waited as the server asked) and other 4xx (the request or the key is wrong),
    and the caller's mistakes (InputError, ConfigError, ...).
    """
    if not isinstance(error, DSPexError):
        return "NativeCrash"
    if isinstance(error, (ParseError, Timeout, LMConnectionError)):
        return type(error).__name__
    if isinstance(error, LMError):
        status = error.status
        if status is not None and (status == 408 or status >= 500 or 200 <= status < 300):
            return type(error).__name__
    return None


@functools.lru_cache(maxsize=4096)
def _metric_attributes(label: str, impl: str, outcome: str | None = None) -> dict[str, str]:
    """The attributes of a call's metrics, built once per label, implementation and outcome and
    shared by every module actor (not per call, and not per actor: 10k modules stay small).
    The OpenTelemetry SDK copies attributes; nobody may mutate these."""
    attributes = {telemetry.OPERATION: label, telemetry.IMPLEMENTATION: impl}
    if outcome is not None:
        attributes[telemetry.OUTCOME] = outcome
    return attributes


def _with_fallback_error(error: DSPexError, fallback: DSPexError) -> DSPexError:
    """Native's ``error`` with dspy's attached: as ``fallback_error``, and its type and first
    line at the end of the message (LiteLLM's further lines of advice are not dspex's)."""
    error.fallback_error = fallback
    first = str(fallback).strip().partition("\n")[0]
    error.args = (f"{error}; the dspy fallback failed too: {type(fallback).__name__}: {first}",)
    return error


class ModuleContext(Protocol):
    """What a module actor may use of its runtime, and nothing more: the routing snapshot it
    reads, the implementations it builds on, the router it reports to, the loop's clock and
    whether shutdown is forcing. The :class:`~dspex.Runtime` provides it."""

    @property
    def routing(self) -> SnapshotCell:
        """The router's published snapshot (registry, configuration, circuits)."""
        ...

    @property
    def config(self) -> Config:
        """The configuration in force."""
        ...

    @property
    def backends(self) -> Mapping[str, Backend]:
        """The implementations by name: ``native``, ``dspy``."""
        ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the module runs on."""
        ...

    @property
    def forcing(self) -> bool:
        """Whether shutdown cancels calls in flight instead of draining them."""
        ...

    def whereis(self, name: str) -> ActorRef | None:
        """The live actor registered under ``name`` (the router), or None."""
        ...

    @property
    def tasks(self) -> TaskSupervisorRef | None:
        """The task supervisor the module's calls run under (None while it restarts)."""
        ...


class SpecBox:
    """The module's current spec, kept outside the actor so a restart starts from the latest
    demos and settings (as OTP keeps state that must survive a crash in ETS)."""

    __slots__ = ("spec",)

    def __init__(self, spec: ModuleSpec):
        self.spec = spec


class Execute(msgspec.Struct, frozen=True):
    """Run the module on ``inputs``; ``implementation`` forces one for this call; ``deadline``
    (event loop time) is when the caller stops waiting, if ever; ``stream``: where a streamed
    call's events go; ``budget``: the call's own limit on LM use."""

    inputs: Mapping[str, Any]
    options: CallOptions
    implementation: Implementation | None = None
    trace_context: Any = None
    key: str | None = None
    deadline: float | None = None
    stream: CallStream | None = None
    budget: Budget | None = None


class Info(msgspec.Struct, frozen=True):
    """Request the module's description."""


class GetDemos(msgspec.Struct, frozen=True):
    """Request the module's current demos (as created, or as set since): with ``predictor``,
    those of one of its inner predictors (a ReAct's ``react``), as read from a program."""

    predictor: str | None = None


class SetDemos(msgspec.Struct, frozen=True):
    """Replace the module's demos (kept across restarts); ``demos`` as the caller gave them,
    checked by the actor against the signature of the module, or of its inner ``predictor``."""

    demos: Any
    predictor: str | None = None


def with_demos(spec: ModuleSpec, demos: object, predictor: str | None) -> ModuleSpec:
    """``spec`` with new ``demos`` for the module, or for its inner ``predictor``; ConfigError
    for demos that do not fit, or a predictor it does not have."""
    if predictor is None:
        return msgspec.structs.replace(spec, demos=check_demos(demos, spec.signature))
    state = spec.predictors.get(predictor)
    if state is None:
        raise _no_predictor(spec, predictor)
    state = msgspec.structs.replace(state, demos=check_demos(demos, state.signature))
    return msgspec.structs.replace(spec, predictors={**spec.predictors, predictor: state})


def _no_predictor(spec: ModuleSpec, predictor: str) -> ConfigError:
    return ConfigError(
        f"{spec.module_type} has no predictor {predictor!r} of its own; its predictors: "
        f"{list(spec.predictors)}"
    )


def _batch(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A Parallel call's inputs: ``batch``, a list of input mappings (each checked as it runs)."""
    batch = inputs.get("batch") if isinstance(inputs, Mapping) else None
    if not isinstance(batch, (list, tuple)) or not all(isinstance(i, Mapping) for i in batch):
        raise InputError("Parallel takes batch=[{...}, ...]: a list of input mappings")
    return {"batch": list(batch)}


def check_demos(demos: object, signature: Signature | None) -> tuple[dict[str, Any], ...]:
    """``demos`` as a tuple of dicts, if DSPy would use each of them; else a ConfigError
    naming the demo and what is wrong.

    Each must be a mapping of field name (a str) to value that holds at least one input field
    and one output field of ``signature``: DSPy drops any other demo without a word. Other keys
    are ignored, as in DSPy (its compiled demos carry ``augmented``). Without a signature (a
    wrapped program) only the shape is checked: the program's own predictors take the demos.
    """
    if isinstance(demos, (str, bytes, Mapping)) or not isinstance(demos, Iterable):
        raise ConfigError(
            "demos must be a list of mappings of field name to value, e.g. "
            f"[{{'question': 'Capital of Italy?', 'answer': 'Rome'}}]; got {demos!r}"
        )
    checked = []
    for i, demo in enumerate(demos):
        if not isinstance(demo, Mapping) or not all(isinstance(k, str) for k in demo):
            raise ConfigError(
                f"demos[{i}] must be a mapping of field name (a str) to value, got {demo!r}"
            )
        if signature is not None and not (
            any(k in demo for k in signature.input_names)
            and any(k in demo for k in signature.output_names)
        ):
            raise ConfigError(
                f"demos[{i}] has the keys {list(demo)}: a demo needs at least one input field "
                f"{list(signature.input_names)} and one output field "
                f"{list(signature.output_names)} of the signature {signature.signature!r} "
                "(DSPy would drop it)"
            )
        checked.append(dict(demo))
    return tuple(checked)


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


class ModuleStart(msgspec.Struct, frozen=True, kw_only=True):
    """How a module actor starts: its spec (in the box that outlives its incarnations), the
    implementation it is forced to (its fallback restart forces ``dspy``), its context and the
    label its metrics and spans carry (its type, or a wrapped program's name)."""

    box: SpecBox
    forced: Implementation | None
    context: ModuleContext
    label: str


class ModuleActor(Actor):
    """Owns one module's spec and backend instances; runs its calls."""

    trap_exit = True  # its supervisor's shutdown is graceful: the calls in flight drain

    async def init(self, start: ModuleStart) -> None:
        box, forced, rt, label = start.box, start.forced, start.context, start.label
        self.box: SpecBox = box
        self.forced: Implementation | None = forced
        self.rt: ModuleContext = rt
        self.loop = rt.loop  # the clock of routing and circuits
        spec = box.spec
        self.module_type = spec.module_type
        self.label: str = label  # what metrics and spans call it: the type, or a wrap's name
        registry = rt.routing.snapshot.registry
        self.available = registry.available_implementations(self.module_type)
        self.native_available = "native" in self.available
        self.check = self._input_check(KINDS[self.module_type], spec.signature)
        self.native_unsupported: str | None = None
        self.in_flight = 0
        self.shadows_in_flight = 0
        config = rt.config
        self.max_concurrency = config.max_concurrency  # calls running at once (in_flight)
        # accepted calls waiting for a slot (made on first need: a deque is 600 bytes)
        self.waiting: deque[asyncio.Future[None]] | None = None
        # calls accepted: running, or waiting for a slot (the documented mailbox_size more)
        self.accepted = 0
        self.capacity = config.max_concurrency + config.mailbox_size
        self.room: asyncio.Future[None] | None = None  # overload="wait": the mailbox waits here
        self.router: ActorRef | None = None  # where outcomes go (looked up again after restarts)
        self.task_supervisor: TaskSupervisorRef | None = None  # where calls run (likewise)
        self.me = self.ref
        # what its LM's tokens cost (None: not priced, or a program, whose modules price theirs)
        self.price = price_of(spec.lm.model) if spec.lm is not None else None
        self.instances: dict[str, Any] = await self._build(spec)

    async def _build(self, spec: ModuleSpec) -> dict[str, Any]:
        """Build what the module serves ``spec`` on: native now (cheap); dspy now only if
        forced or native is unavailable, otherwise on first use (importing DSPy takes seconds)."""
        instances: dict[str, Any] = {}
        forced = self.forced
        if self.native_available and forced != "dspy":
            try:
                instances["native"] = await self.rt.backends["native"].create(spec)
            except SignatureError as exc:
                if forced == "native" or "dspy" not in self.available:
                    raise
                self.native_unsupported = str(exc)  # e.g. a dspy.Type field: serve on dspy
        if forced == "dspy" or not self.native_available:
            instances["dspy"] = await self.rt.backends["dspy"].create(spec)
        return instances

    async def _instance(self, impl: Implementation) -> Any:
        instance = self.instances.get(impl)
        if instance is None:
            instance = self.instances[impl] = await self.rt.backends[impl].create(self.box.spec)
        return instance

    # -- calls ----------------------------------------------------------------------------------

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if isinstance(msg, Execute):
            try:
                inputs = self.check(msg.inputs)
                if msg.stream is not None:
                    self._check_streams()
            except DSPexError as exc:
                caller.fail(exc)
                return NOREPLY
            while self.accepted >= self.capacity:
                if self.rt.config.overload == "raise":
                    caller.fail(MailboxFull(f"{self.label}: max_concurrency + mailbox_size taken"))
                    return NOREPLY  # the facade words it as Overloaded
                self.room = self.loop.create_future()  # overload="wait": wait for room
                await self.room
            tasks = self.task_supervisor
            if tasks is None or not tasks.alive:
                tasks = self._tasks()
            if tasks is None:  # its supervisor restarts it: a moment
                caller.fail(Unavailable(f"{self.label}: the runtime's task supervisor restarts"))
                return NOREPLY
            task = tasks.async_nolink(
                self._run, msg, inputs, caller, owner=self.me, report="abnormal"
            )
            self.accepted += 1
            caller.on_abandon(task.cancel)  # deadline or cancellation: stop the work, LM included
            return NOREPLY
        if isinstance(msg, SetDemos):
            # Build on the new demos first; only if that works do they replace the old ones.
            try:
                spec = with_demos(self.box.spec, msg.demos, msg.predictor)
                instances = await self._build(spec)
            except Exception as exc:  # demos that do not fit: the module is unchanged
                if not isinstance(exc, DSPexError):
                    exc = ModuleError(f"{self.label}: building it with these demos failed: {exc!r}")
                caller.fail(exc)
                return NOREPLY
            old, self.box.spec, self.instances = self.instances, spec, instances
            self._release(old)
            return None
        if isinstance(msg, Info):
            return self._info()
        if isinstance(msg, GetDemos):
            spec = self.box.spec
            if msg.predictor is None:
                return spec.demos
            state = spec.predictors.get(msg.predictor)
            if state is None:
                caller.fail(_no_predictor(spec, msg.predictor))
                return NOREPLY
            return state.demos
        return await super().handle_call(msg, caller)

    @staticmethod
    def _input_check(
        kind: ModuleKind, signature: Signature | None
    ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """How this module's calls have their inputs checked, chosen once from its kind."""
        if kind.inputs == "batch":
            return _batch
        if kind.inputs == "program" or signature is None:
            return dict  # a wrapped dspy.Module: its own forward checks its inputs
        extra = kind.extra_inputs
        if not extra:
            return functools.partial(check_inputs, signature)

        def with_extra(inputs: Mapping[str, Any]) -> dict[str, Any]:
            checked = check_inputs(signature, inputs)
            checked.update((k, inputs[k]) for k in extra if k in inputs)
            return checked

        return with_extra

    def _choose(
        self, snapshot: RoutingSnapshot, msg: Execute, forced: Implementation | None
    ) -> tuple[Implementation, RouteReason]:
        impl, reason = choose(
            snapshot, self.module_type, forced, self.loop.time(), key=msg.key, label=self.label
        )
        if impl == "native" and self.native_unsupported is not None:
            return "dspy", "only"
        return impl, reason

    async def _run(self, msg: Execute, inputs: dict[str, Any], caller: Caller) -> None:
        """Run an accepted call once one of the ``max_concurrency`` slots is free; its place
        among the accepted calls frees when it ends, or when its caller gives up meanwhile.
        (One coroutine per call: the admission is inlined here, not a wrapper's frame.)"""
        if self.in_flight < self.max_concurrency:
            self.in_flight += 1
        else:
            try:
                await self._slot()
            except BaseException:  # cancelled while waiting for a slot
                self._leave()
                self._cancelled(caller)
                raise
        stream = msg.stream
        try:
            start = time.perf_counter()
            if msg.deadline is not None:
                CALL_DEADLINE.set(msg.deadline)  # this task's context: the LM client reads it
            if stream is not None:
                STREAM.set(stream)  # likewise: the implementation serving it streams to it
            use = msg.options.cache_use()
            if use is not None:
                CALL_CACHE.set(use)  # and the response cache reads this
            forced = msg.implementation or self.forced
            snapshot = self.rt.routing.snapshot
            config = snapshot.config
            spend: CallSpend | None = None
            if msg.budget is not None or config.budget is not None or config.budgets:
                try:  # nothing is sent once a budget is spent
                    self.rt.routing.spent.check(config, self.module_type)
                except BudgetExceeded as exc:
                    caller.fail(exc)
                    return
                spend = CallSpend(msg.budget)  # what the call uses, request by request
                CALL_SPEND.set(spend)
            impl, reason = self._choose(snapshot, msg, forced)
            if reason == "probe" and not await self._claim_probe():
                impl, reason = "dspy", "circuit_open"
            served, fallback_reason, error = impl, "", ""
            span = telemetry.tracer.start_span("dspex.route", context=msg.trace_context)
            recording = span.is_recording()  # False without an SDK: spans cost next to nothing
            token = otel_context.attach(trace.set_span_in_context(span)) if recording else None
            try:
                pred = await self._attempt(
                    impl, forced, inputs, msg.options, reason, start, recording, spend
                )
            except Exception as err:
                error = type(err).__name__
                if recording:
                    span.record_exception(err)
                failure = await self._failed(impl, err)
                why = self._fallback_reason(impl, forced, err)
                if stream is not None and why is not None:
                    if stream.sent:  # the caller has native's chunks: no switch mid-stream
                        why = None
                    else:
                        stream.restart()
                if why is None:
                    caller.fail(failure)
                    return
                served, fallback_reason = "dspy", why
                telemetry.fallbacks.add(1, {telemetry.OPERATION: self.label})
                # one request, no more, and a new one: not the reply native just failed on,
                # from the cache (the new reply replaces it there)
                once = msgspec.structs.replace(msg.options, num_retries=0, refresh=True)
                CALL_CACHE.set(once.cache_use())
                try:
                    if spend is not None:  # what native used counts against the call's budget
                        spend.before_request()
                    again = time.perf_counter()
                    pred = await self._attempt(
                        "dspy", None, inputs, once, reason, again, recording, spend
                    )
                    if stream is not None:
                        await stream.finish()
                except Exception as second:
                    error = type(second).__name__
                    caller.fail(_with_fallback_error(failure, await self._failed("dspy", second)))
                    return
                error = ""
                detail = repr(err) if why == "NativeCrash" else str(err)
                caller.reply(pred.with_served("dspy", fallback_reason=f"{why}: {detail}"))
            else:
                if stream is not None:
                    await stream.finish()  # the text its listeners still hold, before the end
                caller.reply(pred)
                shadow = snapshot.config.shadow.get(self.module_type)
                if shadow is not None:
                    seconds = time.perf_counter() - start
                    self._maybe_shadow(shadow, impl, inputs, msg.options, pred, seconds)
            finally:
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
        except asyncio.CancelledError:
            self._cancelled(caller)
            raise
        finally:
            self._free_slot()
            self._leave()

    def _check_streams(self) -> None:
        """ConfigError if this module's calls cannot stream: a Parallel (a batch per call)
        or a TwoStep adapter (its answer is free text; DSPy streams neither)."""
        kind = KINDS[self.module_type]
        if kind.inputs == "batch":
            raise ConfigError(
                f"{self.label} calls return a batch and do not stream; stream its module "
                "once per input instead"
            )
        if isinstance(self.box.spec.adapter, TwoStep):
            raise ConfigError(
                f"{self.label} runs on a TwoStep adapter, whose free-text answer has no "
                "fields to stream (as in DSPy); stream with the chat, json or xml adapter"
            )

    def _tasks(self) -> TaskSupervisorRef | None:
        """The runtime's task supervisor (looked up again after it restarted)."""
        tasks = self.task_supervisor
        if tasks is None or not tasks.alive:
            tasks = self.task_supervisor = self.rt.tasks
        return tasks

    def _cancelled(self, caller: Caller) -> None:
        """A call's task was cancelled: by its caller giving up (nobody waits then), or while
        the caller still waits, by a forced shutdown or the task supervisor stopping; that
        caller learns it as if the actor had exited under the call."""
        if caller.waiting:
            caller.fail(ActorExited(self.me, "shutdown" if self.rt.forcing else "killed"))

    async def _slot(self) -> None:
        """Wait, in arrival order, until a call that ends hands this one its slot."""
        handed: asyncio.Future[None] = self.loop.create_future()
        if self.waiting is None:
            self.waiting = deque()
        self.waiting.append(handed)
        try:
            await handed
        except BaseException:
            if handed.done() and not handed.cancelled():  # handed a slot, then cancelled
                self._free_slot()
            raise

    def _free_slot(self) -> None:
        """A call that ran is over: its slot goes to the longest-waiting call, if any."""
        waiting = self.waiting
        while waiting:  # (None or empty: nobody waits)
            handed = waiting.popleft()
            if not handed.done():  # (a call whose caller gave up while waiting is skipped)
                handed.set_result(None)
                return
        self.in_flight -= 1

    def _leave(self) -> None:
        """A call accepted is over: its place is free for the next (and the mailbox, if it
        waits for room, goes on)."""
        self.accepted -= 1
        room = self.room
        if room is not None:
            self.room = None
            if not room.done():
                room.set_result(None)

    async def _claim_probe(self) -> bool:
        """Ask the router whether this call is the one that probes native (see ClaimProbe)."""
        router = self.rt.whereis("dspex.router")
        if router is None:
            return False
        try:
            granted: bool = await router.call(ClaimProbe(self.label))
        except DSPexError:  # the router is restarting or stopped: stay on dspy
            return False
        except asyncio.CancelledError:  # a probe granted now would never report: reopen
            self._report(ProbeAbandoned(self.label))
            raise
        return granted

    async def _failed(self, impl: Implementation, err: Exception) -> DSPexError:
        """The error for the caller of an attempt that failed with ``err``.

        An unexpected exception in native code (a bug) is reported to the router and the native
        instance rebuilt from the spec, in case the bug left it broken; if the rebuild fails
        the actor's own state is broken and that exception crashes the actor."""
        if isinstance(err, DSPexError):
            return err
        failure = ModuleError(f"{self.label} crashed in {impl} code: {err!r}")
        failure.__cause__ = err
        if impl == "native":
            log.warning("%s: native code crashed a call; rebuilding it", self.label, exc_info=err)
            self._report(NativeCrashed(self.label, repr(err)))
            self.instances["native"] = await self.rt.backends["native"].create(self.box.spec)
        return failure

    def _maybe_shadow(
        self,
        shadow: Shadow,
        served: Implementation,
        inputs: dict[str, Any],
        options: CallOptions,
        pred: Prediction,
        seconds: float,
    ) -> None:
        """Sample this call for a shadow run on the other implementation, within the caps."""
        other: Implementation = "dspy" if served == "native" else "native"
        if (
            self.shadows_in_flight >= shadow.max_in_flight
            or other not in self.available
            or (other == "native" and self.native_unsupported is not None)
            or random.random() >= shadow.rate
        ):
            return
        tasks = self._tasks()
        if tasks is None:
            return
        self.shadows_in_flight += 1
        tasks.async_nolink(
            self._shadow, other, inputs, options, pred, seconds, owner=self.me, report="abnormal"
        )

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
        STREAM.set(None)  # a streamed call's shadow streams to nobody
        CALL_SPEND.set(None)  # and spends nothing of the call's budget
        # nor is it answered from the response cache: it would compare the primary's reply
        # with itself
        options = msgspec.structs.replace(options, cache=False)
        CALL_CACHE.set(options.cache_use())
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

    def _fallback_reason(
        self, impl: Implementation, forced: Implementation | None, err: Exception
    ) -> str | None:
        """Why the failed attempt is re-run on dspy, or None: only a native attempt that was
        not forced, with ``allow_fallback``, and an error dspy could get past."""
        if impl != "native" or forced is not None or not self.rt.config.allow_fallback:
            return None
        return dspy_could_succeed(err) if "dspy" in self.available else None

    async def _attempt(
        self,
        impl: Implementation,
        forced: Implementation | None,
        inputs: dict[str, Any],
        options: CallOptions,
        reason: RouteReason,
        start: float,
        traced: bool,
        spend: CallSpend | None,
    ) -> Prediction:
        """One try on one implementation, reported to the router and to the metrics; traced
        in a ``dspex.module.execute`` span when its parent, the call's route span, is recorded
        (as a parent-based sampler would decide: without an SDK, neither span costs a thing).
        ``spend``: the call's LM use, when a budget applies."""
        ok = fell_back = stopped = False
        usage: dict[str, int] = _NO_USAGE
        cost: float | None = None
        used = (spend.prompt_tokens, spend.completion_tokens, spend.cost) if spend else None
        span = telemetry.tracer.start_span("dspex.module.execute") if traced else None
        token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        try:
            instance = self.instances.get(impl) or await self._instance(impl)
            pred = await self.rt.backends[impl].execute(instance, inputs, options)
            ok = True
            usage = pred.usage
            if usage:
                if pred.cost is None and self.price is not None:
                    pred.cost = self.price.cost(usage)
                cost = pred.cost
                if spend is not None and impl == "dspy":  # native counted each request
                    spend.add(
                        usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), cost
                    )
            return pred
        except Exception as err:
            fell_back = self._fallback_reason(impl, forced, err) is not None
            stopped = isinstance(err, BudgetExceeded)
            if spend is not None and used is not None:  # what its requests used before it failed
                usage = {
                    "prompt_tokens": spend.prompt_tokens - used[0],
                    "completion_tokens": spend.completion_tokens - used[1],
                }
                cost = spend.cost - used[2] if self.price is not None else None
            raise
        finally:
            duration = time.perf_counter() - start
            probe = reason == "probe" and impl == "native"
            kind = self.module_type if self.label != self.module_type else None
            self._report(
                Outcome(
                    self.label,
                    impl,
                    duration,
                    ok,
                    fell_back,
                    probe,
                    kind,
                    usage.get("prompt_tokens", 0),
                    usage.get("completion_tokens", 0),
                    cost,
                    stopped,
                )
            )
            attrs = _metric_attributes(self.label, impl)
            telemetry.calls.add(1, _metric_attributes(self.label, impl, "ok" if ok else "error"))
            telemetry.call_duration.record(duration, attrs)
            if span is not None:
                if token is not None:
                    otel_context.detach(token)
                span.set_attributes(attrs)
                span.end()

    def _report(self, outcome: Outcome | ShadowResult | NativeCrashed | ProbeAbandoned) -> None:
        router = self.router
        if router is None or not router.alive:
            router = self.router = self.rt.whereis("dspex.router")
            if router is None:
                return
        try:
            router.cast(outcome)
        except DSPexError:  # the router is overloaded: metrics may drop, calls never do
            log.debug("router mailbox full; dropped an outcome")

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Down) and isinstance(msg.actor, TaskRef):
            if isinstance(msg.reason, Exception):
                # What a call's task cannot catch: its rebuild of native failed, so this
                # actor's own state is broken; crash, and the supervisor starts it afresh.
                raise msg.reason
            return  # cancelled from outside: _cancelled answered its caller
        await super().handle_info(msg)

    async def terminate(self, reason: object) -> None:
        """Drain: let the calls in flight finish (the supervisor's shutdown timeout, the
        runtime's ``drain_timeout``, bounds this; then they are cancelled), unless the runtime
        is shutting down by force."""
        tasks = self._tasks()
        mine = tasks.children(self.me) if tasks is not None else []
        if self.rt.forcing:
            for task in mine:
                task.cancel()
        await asyncio.gather(*(task.join() for task in mine))
        self._release(self.instances)

    def _release(self, instances: dict[str, Any]) -> None:
        """Tell the backends these instances serve no more calls."""
        for impl, instance in instances.items():
            self.rt.backends[impl].release(instance)

    def _demos(self, spec: ModuleSpec) -> int:
        """How many demos the module carries: a wrapped program's are its predictors' (those
        DSPy runs in it; ``ProgramRef.info`` adds those of its predictors' own actors)."""
        if self.module_type != "Module":
            return len(spec.demos) + sum(len(p.demos) for p in spec.predictors.values())
        demos: int = self.instances["dspy"].demos
        return demos

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
            circuit=snapshot.circuit_state(self.label, self.loop.time()),
            # a wrapped program's predictors carry their own demos (a compiled program's)
            demos=self._demos(spec),
            in_flight=self.in_flight,
            max_concurrency=self.rt.config.max_concurrency,
            adapter=spec.adapter if isinstance(spec.adapter, str) else "two_step",
            lm=spec.lm.model if spec.lm is not None else None,
        )
