"""The dspy workers as Ray actors: everything of dspex that imports Ray is here.

:class:`RayWorker` is the Ray actor: in a Ray worker process, the same
:class:`~dspex.workers._main.Worker` a forked worker runs, each message of the protocol
(:mod:`dspex.workers._frames`, msgspec-encoded) one actor call, whose result is the answer
(empty for the messages that have none). Calls are numbered and handled in the order sent,
whatever order Ray starts them in. :class:`RayLink` is the service's end of it, which a
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

from dspex.config import CacheConfig, RayWorkers
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

    def __init__(self, cache: bytes = b"") -> None:
        from dspex.cache import ResponseCache
        from dspex.workers._main import Worker, worker_backend

        # A Ray worker keeps a response cache of its own (the service's CacheConfig, msgpack):
        # its replies are not shared with the service's, but its disk folder, if any, is.
        config = msgspec.msgpack.decode(cache, type=CacheConfig) if cache else None
        own = ResponseCache(config) if config is not None and config.enabled else None
        self.worker = Worker(self._answer, worker_backend(own))
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

    async def watch(self) -> None:
        """Never returns: its call fails when the actor dies."""
        await asyncio.Event().wait()

    def _answer(self, message: FromWorker) -> None:
        if isinstance(message, (Ready, Lookup, Store)):  # its cache is its own: no Lookup
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


async def start_ray_worker(config: RayWorkers, cache: CacheConfig | None = None) -> RayLink:
    """A new worker as a Ray actor (joining the cluster first, off the event loop), with a
    response cache of its own made from ``cache`` (None: none)."""
    import anyio.to_thread

    await anyio.to_thread.run_sync(connect, config)
    actor = _actor_class().options(
        num_cpus=config.num_cpus,
        max_restarts=0,
        max_task_retries=0,
        max_concurrency=10_000,
        scheduling_strategy="SPREAD",
    )
    return RayLink(actor.remote(msgspec.msgpack.encode(cache) if cache is not None else b""))
