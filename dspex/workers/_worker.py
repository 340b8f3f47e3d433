"""One worker process, owned by a :class:`WorkerActor` in the service.

The actor starts its worker (a process forked by the zygote, :mod:`dspex.workers._zygote`, or
a Ray actor, :mod:`dspex.workers._ray`: a :class:`Link` either way), waits for it to serve,
sends it each call it is given and replies when the worker answers (OTP's deferred reply), so
one worker runs many calls at once. Its supervisor restarts it, with a new process, when it
exits; how it ends:

- the process died (killed, a segfault, out of memory): the actor exits with
  ``("worker_exit", returncode)``, so every call it had in flight fails at once with
  ``ActorExited``, which :class:`~dspex.workers.WorkerBackend` retries once elsewhere;
- a caller stopped waiting (its deadline passed, or it was cancelled): the process gets a
  :class:`~dspex.workers._frames.Cancel` for that call; if it has not answered it ``grace``
  seconds later, the process is killed (and so replaced): a call that ignores cancellation
  must not hold a worker for ever;
- recycled: past ``max_requests`` calls or ``max_rss`` bytes of resident memory it takes no
  new call, finishes those in flight and stops normally; its supervisor starts a fresh one.

:class:`WorkerSlot` is what the backend reads to pick a worker: written by the actor only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from opentelemetry import propagate
from opentelemetry.trace import StatusCode

from dspex import telemetry
from dspex.actors import NOREPLY, Actor, Caller
from dspex.backends._spec import CallOptions
from dspex.cache import ResponseCache
from dspex.errors import ModuleError
from dspex.streaming._events import StreamEvent
from dspex.workers._frames import (
    Build,
    Cancel,
    Done,
    Drop,
    Events,
    Failed,
    Found,
    FromWorker,
    Lookup,
    Pull,
    Ready,
    Run,
    SpanRecord,
    Store,
    ToWorker,
    WorkerGone,
)
from dspex.workers._zygote import start_worker

log = logging.getLogger("dspex.workers")

#: How long a new worker may take to import DSPy and answer Ready.
START_TIMEOUT = 120.0


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How workers run: ``max_requests`` and ``max_rss`` (bytes) recycle one (None: never);
    ``grace``: seconds a cancelled call may take to stop before its process is killed."""

    max_requests: int | None = None
    max_rss: int | None = None
    grace: float = 2.0


class WorkerSlot:
    """One worker's place in the pool: the live actor (``ref``, None while it restarts),
    whether it takes new calls and how many it runs. Written by the worker's actor only."""

    __slots__ = ("accepting", "gone", "in_flight", "index", "link", "pid", "ref", "rss", "woken")

    def __init__(self, index: int, woken: asyncio.Event):
        self.index = index
        self.ref: Any = None
        self.link: Link | None = None  # the worker's end (a Ray worker's: its actor handle)
        self.accepting = False
        self.gone = False  # its supervisor stopped restarting it
        self.in_flight = 0
        self.pid: int | None = None
        self.rss = 0
        self.woken = woken  # set whenever a worker starts taking calls


class Feed:
    """The service's end of a streamed call in a worker: the batches of events its pulls
    brought, read by the backend, which asks for the next batch (:class:`PullNext`) once it
    has put one in the caller's stream. ``call_id``: the call's id with its worker."""

    __slots__ = ("batches", "call_id", "closed", "waiter")

    def __init__(self) -> None:
        self.batches: deque[tuple[list[StreamEvent], bool]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.call_id = 0

    def deliver(self, events: list[StreamEvent], end: bool) -> None:
        """A pull's answer arrived."""
        self.batches.append((events, end))
        self._wake()

    def close(self) -> None:
        """No more batches will come (the worker is gone, or the call over)."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> tuple[list[StreamEvent], bool]:
        """The next batch and whether the stream ended with it."""
        while not self.batches:
            if self.closed:
                return [], True
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.batches.popleft()


class Call(msgspec.Struct, frozen=True):
    """Run module ``key`` (pickled ``spec``, sent to a worker the first time) on pickled
    ``inputs``; ``timeout``: what is left of the call's deadline; ``trace``: the trace
    context of a traced call (the worker's span is emitted under it); ``feed``: where a
    streamed call's events go."""

    key: int
    spec: bytes
    inputs: bytes
    options: CallOptions
    timeout: float | None
    trace: dict[str, str] | None = None
    feed: Feed | None = None


class PullNext(msgspec.Struct, frozen=True):
    """Ask the worker for the next events of the streamed call ``feed`` reads."""

    feed: Feed


class Prepare(msgspec.Struct, frozen=True):
    """Build module ``key`` from its pickled ``spec`` now, replying once it is built (or
    failing with why it does not build)."""

    key: int
    spec: bytes


class WorkerTraceback(Exception):
    """The cause of an error raised in a worker process: its traceback there, as text (the
    exceptions of DSPy and LiteLLM stay in the worker)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\n(in the dspy worker process)\n{self.text}"


class Forget(msgspec.Struct, frozen=True):
    """Module ``key`` stopped: the worker may drop it."""

    key: int


class Link(Protocol):
    """The service's end of one worker: a process forked by the zygote
    (:class:`~dspex.workers._zygote.WorkerProcess`) or a Ray actor
    (:class:`~dspex.workers._ray.RayLink`)."""

    def send(self, message: ToWorker) -> None:
        """Send ``message`` to the worker (never blocks)."""

    async def receive(self) -> FromWorker:
        """The worker's next message; raises WorkerGone once the worker has ended."""

    def kill(self) -> None:
        """End the worker now."""

    async def close(self, timeout: float) -> None:
        """End the worker: ask, then kill it after ``timeout`` seconds."""


class WorkerStart(msgspec.Struct, frozen=True):
    """What a worker actor starts from: its slot, the settings, how to start its worker
    (``start``: a coroutine function returning its :class:`Link`) and the service's response
    cache, which its worker's LM requests use (None: none)."""

    slot: WorkerSlot
    settings: WorkerSettings
    start: Callable[[], Awaitable[Link]] = start_worker
    cache: ResponseCache | None = None


def emit(record: SpanRecord, trace: dict[str, str]) -> None:
    """Emit a span a worker recorded, as a child of the span ``trace`` propagated to it."""
    span = telemetry.tracer.start_span(
        record.name,
        context=propagate.extract(trace),
        start_time=record.start,
        attributes=record.attributes,
    )
    if record.error is not None:
        span.set_attribute(telemetry.ERROR_TYPE, record.error)
        span.set_status(StatusCode.ERROR)
    span.end(end_time=record.end)


class WorkerActor(Actor):
    """Owns one worker process; see the module's docstring."""

    trap_exit = True  # its supervisor's shutdown is graceful: terminate closes the process

    async def init(self, *args: Any) -> None:
        (start,) = args
        self.slot: WorkerSlot = start.slot
        self.settings: WorkerSettings = start.settings
        self.ids = itertools.count(1)
        self.pending: dict[int, Caller] = {}
        self.traces: dict[int, dict[str, str]] = {}  # the trace context of each traced call
        self.pulls: dict[int, Feed] = {}  # the streamed calls' pulls not answered yet
        self.built: set[int] = set()
        self.requests = 0
        # calls whose caller gave up, until the process answers them: their kill timers
        self.cancelled: dict[int, asyncio.TimerHandle] = {}
        self.worker: Link | None = None  # the worker's end, once started
        self.start_worker = start.start
        self.cache = start.cache
        self.lookups: set[asyncio.Task[None]] = set()  # the worker's cache claims, answering
        # The first worker waits for the zygote to import DSPy (seconds): the actor is up at
        # once, and takes calls once its process says Ready, so its siblings start meanwhile.
        self.start_task(self._receive())

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if isinstance(msg, Call):
            if msg.key not in self.built:
                self._send(Build(msg.key, msg.spec))
                self.built.add(msg.key)
            call_id = next(self.ids)
            feed = msg.feed
            self._send(
                Run(
                    call_id,
                    msg.key,
                    msg.inputs,
                    msg.options,
                    msg.timeout,
                    msg.trace,
                    stream=feed is not None,
                )
            )
            if feed is not None:
                feed.call_id = call_id
                self._pull(feed)
            self.pending[call_id] = caller
            if msg.trace is not None:
                self.traces[call_id] = msg.trace
            self.slot.in_flight += 1
            self.requests += 1
            caller.on_abandon(functools.partial(self._abandoned, call_id))
            if self._spent():
                self._drain()
            return NOREPLY
        if isinstance(msg, Prepare):
            call_id = next(self.ids)
            self._send(Build(msg.key, msg.spec, call_id))
            self.built.add(msg.key)
            self.pending[call_id] = caller
            self.slot.in_flight += 1
            return NOREPLY
        return await super().handle_call(msg, caller)

    async def handle_cast(self, msg: Any) -> None:
        if isinstance(msg, PullNext):
            if self.worker is not None:
                self._pull(msg.feed)
            else:
                msg.feed.close()
            return
        if isinstance(msg, Forget):
            if msg.key in self.built:
                self.built.discard(msg.key)
                self._send(Drop(msg.key))
            return
        await super().handle_cast(msg)

    async def terminate(self, reason: object) -> None:
        # The calls still pending fail with ActorExited as the actor exits: the backend
        # retries them once on another worker.
        self.slot.accepting = False
        self.slot.ref = self.slot.link = None
        for timer in self.cancelled.values():
            timer.cancel()
        for feed in self.pulls.values():
            feed.close()
        for lookup in self.lookups:
            lookup.cancel()
        if self.cache is not None:  # the requests its worker was sending: others send them
            self.cache.abandon(self.ref)
        if self.worker is not None:
            await self.worker.close(5.0)

    # -- the process ------------------------------------------------------------------------

    def _send(self, message: ToWorker) -> None:
        assert self.worker is not None
        self.worker.send(message)

    def _pull(self, feed: Feed) -> None:
        pull_id = next(self.ids)
        self.pulls[pull_id] = feed
        self._send(Pull(pull_id, feed.call_id))

    async def _receive(self) -> None:
        """Wait for the process to serve, then answer each call as the process answers it;
        exit when the process ends (or does not start)."""
        import cloudpickle

        try:
            link: Link = await asyncio.wait_for(self.start_worker(), START_TIMEOUT)
            self.worker = link
        except Exception as exc:  # OSError, a timeout, Ray's errors
            self.stop(("worker_start_failed", f"{type(exc).__name__}: {exc}"))
            return
        try:
            ready = await asyncio.wait_for(link.receive(), START_TIMEOUT)
            if not isinstance(ready, Ready):
                raise ModuleError(f"a dspy worker sent {type(ready).__name__} before Ready")
        except (WorkerGone, TimeoutError, asyncio.TimeoutError) as exc:
            link.kill()
            self.stop(("worker_start_failed", f"{type(exc).__name__}: {exc}"))
            return
        slot = self.slot
        slot.ref, slot.pid, slot.in_flight, slot.rss = self.ref, ready.pid, 0, 0
        slot.link = link
        slot.accepting = True
        slot.woken.set()  # wakes the calls waiting for a worker; later ones find it taking calls
        slot.woken.clear()
        try:
            while True:
                msg = await link.receive()
                if isinstance(msg, Ready):
                    continue
                if isinstance(msg, Events):
                    feed = self.pulls.pop(msg.id, None)
                    if feed is not None:
                        feed.deliver(msg.events, msg.end)
                    continue
                if isinstance(msg, Lookup):
                    reply = None if self.cache is None else self.cache.get(msg.key)
                    if reply is not None or self.cache is None:  # answered at once
                        with contextlib.suppress(ConnectionError, RuntimeError):  # it is gone
                            link.send(Found(msg.id, reply))
                        continue
                    lookup = asyncio.get_running_loop().create_task(self._lookup(link, msg))
                    self.lookups.add(lookup)
                    lookup.add_done_callback(self.lookups.discard)
                    continue
                if isinstance(msg, Store):
                    if self.cache is not None:
                        self.cache.fill(msg.key, msg.reply)
                    continue
                caller = self.pending.pop(msg.id, None)
                self.slot.rss = msg.rss
                trace = self.traces.pop(msg.id, None)
                if msg.span is not None and trace is not None:
                    emit(msg.span, trace)
                if caller is None:  # its caller gave up: the process stopped it in time
                    timer = self.cancelled.pop(msg.id, None)
                    if timer is not None:
                        timer.cancel()
                    continue
                self.slot.in_flight -= 1
                if isinstance(msg, Done):
                    caller.reply(cloudpickle.loads(msg.result))
                elif isinstance(msg, Failed):
                    error = cloudpickle.loads(msg.error)
                    if msg.cause is not None:
                        error.__cause__ = WorkerTraceback(msg.cause)
                    caller.fail(error)
                if self._spent():
                    self._drain()
        except WorkerGone as gone:
            self.stop(("worker_exit", gone.code))

    async def _lookup(self, link: Link, msg: Lookup) -> None:
        """Answer the worker's claim of a cached reply (a miss makes the request its own to
        send: the cache waits for its Store, or for this actor's end)."""
        assert self.cache is not None
        reply = await self.cache.claim(msg.key, self.ref)
        try:
            link.send(Found(msg.id, reply))
        except (ConnectionError, RuntimeError):  # the worker is gone: it sends nothing
            if reply is None:
                self.cache.fill(msg.key, None)

    def _abandoned(self, call_id: int) -> None:
        """The caller of ``call_id`` stopped waiting: cancel the call in the process, and
        replace the process if the call is still running ``grace`` seconds later."""
        if self.pending.pop(call_id, None) is None:
            return
        self.slot.in_flight -= 1
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._send(Cancel(call_id))
        self.cancelled[call_id] = asyncio.get_running_loop().call_later(
            self.settings.grace, self._overdue, call_id
        )
        if self._spent():
            self._drain()

    def _overdue(self, call_id: int) -> None:
        """A cancelled call did not stop within the grace period: kill the process (its
        other calls are retried elsewhere; the supervisor starts a new one)."""
        if self.cancelled.pop(call_id, None) is not None and self.worker is not None:
            log.warning(
                "dspy worker %s did not stop a cancelled call within %.1f s: killing it",
                self.slot.pid,
                self.settings.grace,
            )
            self.worker.kill()

    def _spent(self) -> bool:
        settings, slot = self.settings, self.slot
        return (settings.max_requests is not None and self.requests >= settings.max_requests) or (
            settings.max_rss is not None and slot.rss > settings.max_rss
        )

    def _drain(self) -> None:
        """Take no new call; stop normally (to be replaced) once none is in flight."""
        self.slot.accepting = False
        if not self.pending:
            self.stop("normal")
