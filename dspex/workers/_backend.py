"""The dspy implementation over worker processes: what the module actors call.

:class:`WorkerBackend` keeps the in-process backend's protocol (``create``, ``execute``,
``info``). ``create`` pickles the module's spec once (cloudpickle: a DSPy module or program
travels by value), starts the workers on first use and builds the module in one of them, so
that a module DSPy cannot build fails there, as in process (the others build it on first
use); ``execute`` sends the call to the worker with the fewest calls in flight among those
taking calls, waiting for one while all restart. A worker that dies with the call in flight
is a retry, once, on another worker, within the call's deadline; a second death is a
:class:`~dspex.errors.ModuleError`. When the call is traced, its time in the worker is a
``dspex.dspy.worker`` span (the worker's pid and index as attributes), a child of its
``dspex.module.execute`` span.

A program ``Module.wrap`` serves natively stays in the service's process: its predictors are
module actors there, which its code calls. It runs on the in-process backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from opentelemetry import propagate, trace

from dspex import telemetry
from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.dspy import DSPY_MODULE_TYPES, DSPyBackend
from dspex.config import Implementation
from dspex.errors import (
    ActorExited,
    ConfigError,
    DSPexError,
    InputError,
    ModuleError,
    NoProc,
    Timeout,
    Unavailable,
)
from dspex.lm._client import CALL_DEADLINE
from dspex.prediction import Prediction
from dspex.streaming._call import STREAM, CallStream
from dspex.streaming._events import StreamChunk
from dspex.workers._worker import Call, Feed, Forget, Prepare, PullNext, WorkerSlot

_keys = itertools.count(1)

#: The span attributes of a call's time in a worker: its process id and its index.
WORKER_PID = "dspex.worker.pid"
WORKER_INDEX = "dspex.worker.index"


class Remote:
    """A module built in the workers: its key there, its pickled spec and, for a program
    given as an instance, the demos its predictors carry (0 for one a factory builds there)."""

    __slots__ = ("demos", "key", "spec")

    def __init__(self, key: int, spec: bytes, demos: int):
        self.key = key
        self.spec = spec
        self.demos = demos


class WorkerBackend:
    """The dspy implementation in worker processes (see the module's docstring).

    ``start`` starts the workers (under the runtime's supervisor) and returns their slots; it
    runs once, on first use. ``local`` runs the programs that stay in the service's process.
    """

    name: Implementation = "dspy"

    def __init__(
        self,
        start: Callable[[], Awaitable[list[WorkerSlot]]],
        local: DSPyBackend,
    ):
        self._start = start
        self.local = local
        self.slots: list[WorkerSlot] = []
        self._starting: asyncio.Task[list[WorkerSlot]] | None = None

    @property
    def module_types(self) -> frozenset[str]:
        """Every module type the in-process dspy implementation provides."""
        return DSPY_MODULE_TYPES

    def info(self) -> dict[str, Any]:
        """The implementation and its workers' processes."""
        return {
            "implementation": "dspy",
            "workers": [
                {"pid": s.pid, "in_flight": s.in_flight, "rss": s.rss, "accepting": s.accepting}
                for s in self.slots
            ],
        }

    def _begin(self) -> asyncio.Future[list[WorkerSlot]]:
        """Start the workers unless that is under way or done (once per runtime; a start
        that failed is tried again by the next caller)."""
        if self._starting is None:
            self._starting = starting = asyncio.ensure_future(self._start())
            starting.add_done_callback(self._started)
        return self._starting

    def _started(self, starting: asyncio.Future[list[WorkerSlot]]) -> None:
        if starting.cancelled() or starting.exception() is not None:
            self._starting = None
        else:
            self.slots = starting.result()

    async def started(self) -> list[WorkerSlot]:
        """The workers, started on first use (concurrent callers share the start)."""
        return await asyncio.shield(self._begin())

    async def preload(self) -> None:
        """Start the workers and wait until each takes calls (or has been given up)."""
        slots = await self.started()
        while not all(slot.accepting or slot.gone for slot in slots):
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(slots[0].woken.wait(), 0.1)

    def ready(self) -> bool:
        """Whether a worker takes calls now; if none does, the workers start (never
        blocks): the router explores dspy only once this is true."""
        if any(slot.accepting for slot in self.slots):
            return True
        self._begin()
        return False

    async def create(self, spec: ModuleSpec) -> Any:
        """Pickle ``spec`` for the workers (starting them on first use); a wrapped program
        served natively is built in this process. ConfigError for a spec that does not
        pickle, suggesting a factory."""
        if getattr(spec.program, "open_call", None) is not None:
            return await self.local.create(spec)
        from dspex.workers._pickle import dumps

        try:
            data = dumps(spec)
        except Exception as exc:
            fix = (
                "pass a factory the workers can import instead, e.g. "
                "Module.wrap('myapp.programs:build', implementation='dspy')"
                if spec.module_type == "Module"
                else "give it module-level functions and values the workers can import"
            )
            raise ConfigError(
                f"{spec.module_type} cannot be sent to the dspy worker processes: pickling it "
                f"failed ({type(exc).__name__}: {exc}); {fix}, or set Config(dspy_workers=0) "
                "to run DSPy in this process"
            ) from exc
        await self.started()
        key = next(_keys)
        for attempt in range(2):  # built in one worker now, so what does not build fails here
            slot = await self._pick(None)
            try:
                await slot.ref.call(Prepare(key, data), timeout=None)
                break
            except (ActorExited, NoProc):
                if attempt:
                    raise
        predictors = getattr(spec.program, "predictors", None)
        demos = sum(len(p.demos) for p in predictors()) if callable(predictors) else 0
        return Remote(key, data, demos)

    async def execute(
        self, instance: Any, inputs: Mapping[str, Any], options: CallOptions
    ) -> Prediction:
        """Run one call in a worker (see the module's docstring)."""
        if not isinstance(instance, Remote):
            return await self.local.execute(instance, inputs, options)
        import cloudpickle

        try:
            data = cloudpickle.dumps(dict(inputs))
        except Exception as exc:
            raise InputError(
                f"the inputs cannot be sent to a dspy worker process: {type(exc).__name__}: {exc}"
            ) from exc
        if self.local.cache is None and options.cache is not False:  # none to ask: no Lookup
            options = msgspec.structs.replace(options, cache=False)
        deadline = CALL_DEADLINE.get()
        stream = STREAM.get()
        loop = asyncio.get_running_loop()
        died: BaseException | None = None
        for _ in range(2):
            if stream is not None and stream.sent:  # its chunks went out: not once more
                break
            slot = await self._pick(deadline)
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                break
            span = (
                telemetry.tracer.start_span(
                    "dspex.dspy.worker",
                    attributes={WORKER_PID: slot.pid or 0, WORKER_INDEX: slot.index},
                )
                if trace.get_current_span().is_recording()
                else None
            )
            carrier: dict[str, str] | None = None
            if span is not None:  # the worker's part is a child span: propagate the context
                carrier = {}
                propagate.inject(carrier, context=trace.set_span_in_context(span))
            feed = Feed() if stream is not None else None
            call = Call(instance.key, instance.spec, data, options, timeout, carrier, feed)
            try:
                if stream is None or feed is None:
                    result: Prediction = await slot.ref.call(call, timeout=None)
                else:
                    result = await _streamed(slot.ref, call, feed, stream)
                return result
            except (ActorExited, NoProc) as exc:  # the worker died with the call: once more
                died = exc
                if span is not None:
                    span.set_attribute(telemetry.ERROR_TYPE, "worker_exit")
            except BaseException as exc:
                if span is not None:
                    span.set_attribute(telemetry.ERROR_TYPE, type(exc).__name__)
                raise
            finally:
                if span is not None:
                    span.end()
        if died is not None and stream is not None and stream.sent:
            raise ModuleError(
                f"the dspy worker process streaming this call exited ({died}) after chunks "
                "were sent; a stream is not sent twice"
            ) from died
        if died is None:
            raise Timeout("the call passed its deadline waiting for a dspy worker")
        raise ModuleError(
            f"the dspy worker processes running this call exited twice (last: {died})"
        ) from died

    def release(self, instance: Any) -> None:
        """A module stopped or was rebuilt: its workers drop it."""
        if isinstance(instance, Remote):
            for slot in self.slots:
                if slot.ref is not None:
                    slot.ref.cast(Forget(instance.key))

    async def _pick(self, deadline: float | None) -> WorkerSlot:
        """The live worker with the fewest calls in flight, waiting while none takes calls."""
        loop = asyncio.get_running_loop()
        while True:
            slots = self.slots
            ready = [s for s in slots if s.accepting and s.ref is not None]
            if ready:
                return min(ready, key=lambda s: s.in_flight)
            if slots and all(s.gone for s in slots):
                raise Unavailable(
                    "every dspy worker process stopped: each crashed more often than "
                    "Config.max_restarts within max_seconds"
                )
            woken = slots[0].woken if slots else None
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                raise Timeout("the call passed its deadline waiting for a dspy worker")
            if woken is None:
                await asyncio.sleep(0.01)
                continue
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), min(timeout or 1.0, 1.0))


async def _streamed(ref: Any, call: Call, feed: Feed, stream: CallStream) -> Prediction:
    """Run ``call`` in the worker of ``ref``, putting the events its pulls bring on ``stream``
    (each batch before the next is pulled) and answering once they all are."""
    forward = asyncio.ensure_future(_forward(ref, feed, stream))
    try:
        result: Prediction = await ref.call(call, timeout=None)
    except Exception:
        # The call failed, or its worker is gone: the events that came before the answer
        # (a worker's frames keep their order) still reach the caller, then the error.
        feed.close()
        await forward
        raise
    except BaseException:
        forward.cancel()
        raise
    # The worker answers after its last batch was pulled: that batch is here, or on its way.
    await forward
    return result


async def _forward(ref: Any, feed: Feed, stream: CallStream) -> None:
    while True:
        events, end = await feed.next()
        for event in events:
            if stream.prefix and type(event) is StreamChunk:  # a wrapped program's module
                event = msgspec.structs.replace(event, predictor=stream.path(event.predictor))
            await stream.put(event)
        if end:
            return
        try:
            ref.cast(PullNext(feed))
        except DSPexError:  # the worker's actor is gone
            return
