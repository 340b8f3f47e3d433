"""The dspy workers as Ray actors: everything of dspex that imports Ray is here.

:class:`RayWorker` is the Ray actor: in a Ray worker process, the same
:class:`~dspex.workers._main.Worker` a forked worker runs, each message of the protocol
(:mod:`dspex.workers._frames`, msgspec-encoded) one actor call, whose result is the answer
(empty for the messages that have none). Calls are numbered and handled in the order sent,
whatever order Ray starts them in. The worker's own messages (its response cache's Lookup and
Store: it asks the service's cache, as a forked worker does) are the results of a call the
service keeps waiting (``outgoing``). :class:`RayLink` is the service's end of it, which a
:class:`~dspex.workers.WorkerActor` owns as it owns a forked process: Ray's own restarts and
retries are off (``max_restarts=0``, ``max_task_retries=0``), so a dead actor is a worker exit
to dspex's supervisor, and dspex's restart intensity and retry-once rules apply. A call that
never returns (``watch``) fails as the actor dies: that is how the service learns of a death
while no call runs. Actors are placed with Ray's ``SPREAD`` strategy, over the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import threading
from typing import Any

import msgspec
import ray

from dspex.config import RayWorkers
from dspex.workers._frames import (
    Build,
    FromWorker,
    Lookup,
    Pull,
    Ready,
    Run,
    Store,
    ToWorker,
    WorkerGone,
    encode,
    from_worker,
    to_worker,
)

_lock = threading.Lock()
_batch = msgspec.msgpack.Encoder()
_outgoing = msgspec.msgpack.Decoder(list[Lookup | Store])


def connect(config: RayWorkers) -> int:
    """Join the Ray cluster ``config`` names (or the one this process runs, or a new local
    one), once per process; the number of workers to start. Blocks: call it in a thread."""
    with _lock:
        if not ray.is_initialized():
            ray.init(address=config.address, include_dashboard=False)
    if config.num is not None:
        return config.num
    cpus = float(ray.cluster_resources().get("CPU", 1.0))  # type: ignore[no-untyped-call]
    return max(1, int(cpus // config.num_cpus))


class RayWorker:
    """The Ray actor: a dspy worker (see the module's docstring)."""

    def __init__(self) -> None:
        from dspex.workers._main import LinkedCache, Worker, worker_backend

        # Its LM requests ask the service's response cache, as a forked worker's do: its
        # Lookup and Store messages wait in ``outbox`` for the service's ``outgoing`` call.
        self.outbox: asyncio.Queue[Lookup | Store] = asyncio.Queue()
        cache = LinkedCache(self._answer)
        self.worker = Worker(self._answer, worker_backend(cache), cache)
        self.waiting: dict[int, asyncio.Future[FromWorker]] = {}
        # Ray may start an async actor's calls out of order (a large argument, a Build's
        # spec, resolves later than a small Run's): messages are handled in the order sent.
        self.held: dict[int, ToWorker] = {}
        self.next = 0

    async def ready(self) -> bytes:
        """Import DSPy, then say Ready."""
        from dspex.backends.dspy import import_dspy
        from dspex.workers._main import tune_gc

        await import_dspy(gc_freeze=True)
        tune_gc()
        return encode(Ready(os.getpid()))

    async def handle(self, seq: int, data: bytes) -> bytes:
        """Message number ``seq``: its answer once there is one (a Run's, a Build's with an
        id), else nothing. It is handled after every message numbered before it."""
        message: ToWorker = to_worker.decode(data)
        answer = None
        if isinstance(message, (Run, Build, Pull)) and message.id:
            answer = self.waiting[message.id] = asyncio.get_running_loop().create_future()
        self.held[seq] = message
        while self.next in self.held:
            self.worker.handle(self.held.pop(self.next))
            self.next += 1
        return b"" if answer is None else encode(await answer)

    async def outgoing(self) -> bytes:
        """The worker's next messages that answer no call (its cache's Lookup and Store),
        as soon as there is one: all those waiting, at once."""
        batch = [await self.outbox.get()]
        while not self.outbox.empty():
            batch.append(self.outbox.get_nowait())
        return _batch.encode(batch)

    async def watch(self) -> None:
        """Never returns: its call fails when the actor dies."""
        await asyncio.Event().wait()

    def _answer(self, message: FromWorker) -> None:
        if isinstance(message, (Lookup, Store)):
            self.outbox.put_nowait(message)
            return
        if isinstance(message, Ready):  # ready() says so
            return
        answer = self.waiting.pop(message.id, None)
        if answer is not None and not answer.done():
            answer.set_result(message)


@functools.cache
def _actor_class() -> Any:
    return ray.remote(RayWorker)


class RayLink:
    """The service's end of one :class:`RayWorker` (a :class:`~dspex.workers._worker.Link`)."""

    def __init__(self, actor: Any):
        self.actor = actor
        self.answers: asyncio.Queue[FromWorker | WorkerGone] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent = itertools.count()
        self._start(self.actor.ready.remote())
        self._start(self._watch())
        self._start(self._outgoing())

    def _start(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(
            self._deliver(awaitable) if isinstance(awaitable, ray.ObjectRef) else awaitable
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, ref: ray.ObjectRef[bytes]) -> None:
        try:
            data = await ref
        except ray.exceptions.RayError:  # the actor died (its watch says so too)
            self.answers.put_nowait(WorkerGone(None))
            return
        if data:
            self.answers.put_nowait(from_worker.decode(data))

    async def _outgoing(self) -> None:
        """The worker's cache messages, as it sends them, until it dies."""
        with contextlib.suppress(ray.exceptions.RayError):
            while True:
                for message in _outgoing.decode(await self.actor.outgoing.remote()):
                    self.answers.put_nowait(message)

    async def _watch(self) -> None:
        with contextlib.suppress(ray.exceptions.RayError):
            await self.actor.watch.remote()
        self.answers.put_nowait(WorkerGone(None))

    def send(self, message: ToWorker) -> None:
        """Send ``message`` as one actor call; its answer, if any, arrives by :meth:`receive`."""
        self._start(self.actor.handle.remote(next(self.sent), encode(message)))

    async def receive(self) -> FromWorker:
        """The worker's next answer; WorkerGone once the actor has died."""
        answer = await self.answers.get()
        if isinstance(answer, WorkerGone):
            raise answer
        return answer

    def kill(self) -> None:
        """Kill the actor (Ray does not restart it)."""
        ray.kill(self.actor, no_restart=True)

    async def close(self, timeout: float) -> None:
        """Kill the actor: it holds nothing to finish once dspex has drained its calls."""
        self.kill()
        for task in list(self.tasks):
            task.cancel()


async def start_ray_worker(config: RayWorkers) -> RayLink:
    """A new worker as a Ray actor (joining the cluster first, off the event loop)."""
    import anyio.to_thread

    await anyio.to_thread.run_sync(connect, config)
    actor = _actor_class().options(
        num_cpus=config.num_cpus,
        max_restarts=0,
        max_task_retries=0,
        max_concurrency=10_000,
        scheduling_strategy="SPREAD",
    )
    return RayLink(actor.remote())
