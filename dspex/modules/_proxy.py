"""The stand-in a wrapped program calls instead of one of its predictors.

A :class:`PredictorProxy` takes the place of a served sub-module (a Predict, a
ChainOfThought, a ReAct, ...) in the program's copy. Called from a sync ``forward`` (a worker
thread), it sends the call to the event loop and waits; awaited through ``acall`` (an
``aforward`` on the loop), it awaits the module actor directly. Either way the program gets
what the DSPy module would have returned, and the call keeps the program call's deadline.

Each program call runs inside a :class:`ProgramCall` (the dspy implementation opens it around
the program, see ``ProgramSource.open_call``), found by the proxies in DSPy's own per-call
settings (``dspy.context``, key :data:`PROGRAM_KEY`), which follow the program wherever DSPy
runs it: the task running an ``aforward``, the worker thread of a sync ``forward``, and the
threads of a ``dspy.Parallel`` the program runs. So concurrent program calls never mix their
records. It is the ``dspex.program`` span their route spans
nest in, it records what served each predictor call, and when the program call ends (its
deadline passed, or its caller gave up) it cancels the predictor calls a sync ``forward``
thread still has in flight: that thread gets Timeout there, or at its next predictor call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from dspex import telemetry
from dspex._budget import CallSpend, Use
from dspex.cache import CALL_CACHE
from dspex.errors import ModuleError, Timeout
from dspex.lm._client import CALL_DEADLINE, CALL_SPEND
from dspex.prediction import Prediction
from dspex.streaming._call import STREAM, CallStream

if TYPE_CHECKING:
    from dspex.modules._facade import ModuleRef
    from dspex.modules._program import PredictorPlan

#: Call keywords that change what a DSPy predictor does for one call: such a call runs on the
#: predictor's own DSPy module (``config`` is merged instead when it holds LM overrides only).
_OWN_KEYWORDS = frozenset({"signature", "demos", "lm"})
_CALL_CONFIG = frozenset({"temperature", "max_tokens", "n", "cache", "rollout_id"})


class ProgramCall:
    """One call of a wrapped program, from its start to its end (a context manager, entered
    and left in the task running the program).

    Inside it, DSPy's setting :data:`PROGRAM_KEY` is this call and a ``dspex.program``
    span (attribute ``dspex.operation``: the program's name) is the current span, the parent
    of its predictor calls' route spans. ``served`` holds, per predictor path, the
    implementations that served its calls; leaving it closes the call and cancels the
    predictor calls still ``pending`` (those a sync ``forward`` thread waits for).
    """

    __slots__ = (
        "cache",
        "closed",
        "deadline",
        "dspy",
        "fallbacks",
        "label",
        "local",
        "pending",
        "scope",
        "served",
        "span",
        "spend",
        "stream",
        "trace_token",
        "usage",
        "used",
    )

    def __init__(self, label: str, dspy: Any, local: Callable[[Any], str | None] | None = None):
        self.label = label
        self.dspy = dspy
        self.local = local  # the path of a predictor DSPy runs in the program, by the object
        self.deadline: float | None = None  # the program call's (event loop time), if any
        self.scope: Any = None
        self.closed = False
        self.served: dict[str, set[str]] = {}
        self.fallbacks: list[str] = []
        self.usage: dict[str, int] = {}
        self.pending: set[concurrent.futures.Future[Any]] = set()
        self.stream: CallStream | None = None
        self.spend: CallSpend | None = None
        self.cache: dict[str, Any] = {}  # the call's own cache options, for its modules' calls
        self.used = Use()  # the served predictors' tokens and cost (the call's spend if any)
        self.span: trace.Span = trace.INVALID_SPAN
        self.trace_token: contextvars.Token[otel_context.Context] | None = None

    def __enter__(self) -> ProgramCall:
        span = self.span = telemetry.tracer.start_span(
            "dspex.program", attributes={telemetry.OPERATION: self.label}
        )
        if span.is_recording():  # without an SDK: no context to attach
            self.trace_token = otel_context.attach(trace.set_span_in_context(span))
        self.deadline = CALL_DEADLINE.get()
        self.stream = STREAM.get()  # a streamed program call: its modules stream into it
        spend = CALL_SPEND.get()  # a budgeted one: its modules spend from it
        use = CALL_CACHE.get()  # the call's cache settings: its modules' calls take them
        if use is not None:
            self.cache = {"cache": use.cache, "rollout_id": use.rollout_id}
        if isinstance(spend, CallSpend):
            self.spend = self.used = spend
        self.scope = self.dspy.context(**{PROGRAM_KEY: self})
        self.scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if self.local is not None:  # the predictors DSPy ran in the program, from its trace
            for predictor, _, _ in self.dspy.settings.trace or ():
                path = self.local(predictor)
                if path is not None:
                    self.ran((path,), "dspy")
        if self.scope is not None:
            self.scope.__exit__(exc_type, exc, tb)
        span = self.span
        if self.trace_token is not None:
            otel_context.detach(self.trace_token)
            span.set_attribute(telemetry.IMPLEMENTATION, self.implementation())
            if exc is not None:
                span.set_attribute(telemetry.ERROR_TYPE, type(exc).__name__)
                if isinstance(exc, Exception):
                    span.record_exception(exc)
        span.end()

    def close(self) -> None:
        """The program call is over: no predictor call starts from now on, and those in
        flight are cancelled. (A thread adds its call to ``pending`` before reading
        ``closed``, and this sets ``closed`` before reading ``pending``: either way the call
        is cancelled.)"""
        self.closed = True
        for future in list(self.pending):
            future.cancel()

    def check_open(self, path: str) -> None:
        """Timeout if the program call is over (a thread its caller no longer waits for)."""
        if self.closed:
            raise Timeout(
                f"predictor {path!r} was not called: the call of the program {self.label!r} "
                "is over (its deadline passed or its caller gave up)"
            )

    def record(self, paths: tuple[str, ...], pred: Prediction) -> None:
        """A call of the sub-module whose predictors are at ``paths`` was served as ``pred``
        says."""
        self.ran(paths, pred.implementation)
        if pred.fallback:
            self.fallbacks.append(f"{', '.join(paths)}: {pred.fallback_reason}")
        for key, value in pred.usage.items():
            self.usage[key] = self.usage.get(key, 0) + value
        usage = pred.usage
        self.used.add(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), pred.cost)

    def ran(self, paths: tuple[str, ...], implementation: str) -> None:
        """A call of the sub-module whose predictors are at ``paths`` was served by
        ``implementation``."""
        for path in paths:
            self.served.setdefault(path, set()).add(implementation)

    def served_by(self) -> dict[str, str]:
        """Each predictor path that ran: the implementation that served it, or ``"mixed"``
        when its calls were served by both."""
        return {
            path: next(iter(kinds)) if len(kinds) == 1 else "mixed"
            for path, kinds in self.served.items()
        }

    def implementation(self) -> str:
        """``native``, ``dspy`` or ``mixed``: who served the predictor calls (``dspy`` when
        none ran: the program's own code runs on dspy)."""
        kinds = set(self.served_by().values())
        return kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "dspy"

    def result(self, pred: Prediction) -> Prediction:
        """The program's prediction, with ``served_by``, ``implementation``, the predictors'
        token usage and their fallbacks."""
        return pred.with_predictors(
            self.served_by(),
            self.implementation(),
            usage=self.usage,
            cost=None if self.used.unpriced else self.used.cost,  # unknown if one is
            fallback_reason="; ".join(self.fallbacks) or None,
        )

    def error(self, exc: Exception, text: str) -> ModuleError:
        """The error for the caller when the program's own code raised ``exc`` (``text``: its
        message, any secret masked)."""
        return ModuleError(f"the program {self.label!r} raised {type(exc).__name__}: {text}")


#: The key of the program call in DSPy's settings, in the task or thread a program runs in.
PROGRAM_KEY = "dspex_program_call"


def dspy_result(dspy: Any, module: Any) -> Callable[[Prediction], Any]:
    """How a module actor's prediction becomes what ``module`` returns in DSPy: a ReAct's
    ``dspy.Prediction`` of its trajectory and outputs; the others' predictor's prediction,
    with every completion in ``completions`` (a BestOfN or Refine whose attempts all failed
    without raising returns None, as DSPy does)."""
    kind = type(module).__name__
    if kind == "ReAct":
        return lambda pred: dspy.Prediction(**pred.to_dict())
    inner = module.module if kind in ("BestOfN", "Refine") else module
    predict = inner if type(inner) is dspy.Predict else inner.predict
    signature = predict.signature

    def result(pred: Prediction) -> Any:
        if kind in ("BestOfN", "Refine") and pred.to_dict() == {"output": None}:
            return None
        return dspy.Prediction.from_completions(list(pred.completions), signature=signature)

    return result


class PredictorProxy:
    """Runs one served sub-module of a wrapped program on its dspex module actor.

    Attributes other than the call methods (``signature``, ``demos``, ``predict``, ...) are the
    DSPy module's own, read from the copy the program was built with.
    """

    __slots__ = (
        "_at",
        "_dspy",
        "_loop",
        "_module",
        "_options",
        "_path",
        "_paths",
        "_ref",
        "_result",
    )

    def __init__(
        self,
        dspy: Any,
        module: Any,
        ref: ModuleRef,
        plan: PredictorPlan,
        loop: asyncio.AbstractEventLoop,
    ):
        self._dspy = dspy
        self._module = module
        self._ref = ref
        self._path = plan.path
        self._at = plan.found.path  # the sub-module's own path: its stream chunks' prefix
        self._paths = plan.paths  # the predictors a call of it runs, in DSPy's saved state
        self._loop = loop
        self._options = plan.call_options
        self._result = dspy_result(dspy, module)

    def __repr__(self) -> str:
        return f"<dspex predictor {self._path!r} served by {self._ref!r}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The predictor's sync call, from a program's ``forward`` in a worker thread: the call
        runs on the event loop and this thread waits for it. ModuleError when called on the
        event loop itself (an ``aforward`` must ``await ....acall(...)``); Timeout when the
        program call is over (its deadline passed, or its caller gave up: a predictor call in
        flight then is cancelled and raises it too)."""
        call: ProgramCall | None = self._dspy.settings.get(PROGRAM_KEY)
        if call is not None:
            call.check_open(self._path)
        options = self._call_options(args, kwargs)
        if options is None:
            result = self._module(*args, **kwargs)
            if call is not None:
                call.ran(self._paths, "dspy")  # on the DSPy module itself, in the program
            return result
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise ModuleError(
                f"predictor {self._path!r} was called synchronously on the event loop, which "
                f"would block it; in an aforward, use `await self.{self._path}.acall(...)`"
            )
        timeout = self._timeout(call)
        future = asyncio.run_coroutine_threadsafe(
            self._run(kwargs, options, timeout, call), self._loop
        )
        if call is None:  # a thread the program started itself: no record, no cancellation
            return future.result()
        call.pending.add(future)
        try:
            if call.closed:
                future.cancel()
            return future.result()
        except concurrent.futures.CancelledError:
            call.check_open(self._path)
            raise
        finally:
            call.pending.discard(future)

    forward = __call__

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """The predictor's async call, from a program's ``aforward``: awaits its module actor
        (cancelled with the program call). Timeout when the program call is over."""
        call: ProgramCall | None = self._dspy.settings.get(PROGRAM_KEY)
        if call is not None:
            call.check_open(self._path)
        options = self._call_options(args, kwargs)
        if options is None:
            result = await self._module.acall(*args, **kwargs)
            if call is not None:
                call.ran(self._paths, "dspy")  # on the DSPy module itself, in the program
            return result
        return await self._run(kwargs, options, self._timeout(call), call)

    aforward = acall

    def _call_options(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The call's LM overrides (the predictor's config, then the call's ``config=``), or
        None when this call must run on the DSPy module itself (it passes positional
        arguments, which DSPy refuses, or changes the signature, demos, LM or other config)."""
        if args or not _OWN_KEYWORDS.isdisjoint(kwargs):
            return None
        config = kwargs.pop("config", None)
        if config is None:
            return self._options
        if not isinstance(config, dict) or not _CALL_CONFIG.issuperset(config):
            kwargs["config"] = config
            return None
        return {**self._options, **config}

    def _timeout(self, call: ProgramCall | None) -> float | None:
        """What is left of the program call's deadline (None: the call has none)."""
        deadline = call.deadline if call is not None else CALL_DEADLINE.get()
        if deadline is None:
            return None
        left = deadline - self._loop.time()
        if left <= 0:
            raise Timeout(
                f"predictor {self._path!r} was not called: the program call's deadline passed"
            )
        return left

    async def _run(
        self,
        inputs: dict[str, Any],
        options: dict[str, Any],
        timeout: float | None,
        call: ProgramCall | None,
    ) -> Any:
        stream = None if call is None or call.stream is None else call.stream.child(self._at)
        # what is left of the program call's budget (BudgetExceeded if nothing)
        budget = None if call is None or call.spend is None else call.spend.left()
        if call is not None and call.cache:
            options = {**call.cache, **options}
        if call is None or call.trace_token is None:  # no span recorded
            pred = await self._ref._execute_into(stream, budget, inputs, timeout=timeout, **options)
        else:  # the route span nests in the program's, from whichever thread the call came
            token = otel_context.attach(trace.set_span_in_context(call.span))
            try:
                pred = await self._ref._execute_into(
                    stream, budget, inputs, timeout=timeout, **options
                )
            finally:
                otel_context.detach(token)
        if call is not None:
            call.record(self._paths, pred)
        return self._result(pred)
