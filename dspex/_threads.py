"""Threads for sync user code: ReAct tools, reward functions, sync modules and program
``forward`` s, run with ``anyio.to_thread.run_sync`` under one ``CapacityLimiter`` per runtime.

A thread slot is taken before the code starts and given back only when the code returns: a call
cancelled at its deadline stops waiting at once (the code's result is dropped), but the thread
it left running still counts as busy until it ends, so the limit bounds the threads that really
run. :class:`ThreadStats` is what ``runtime.metrics().threads`` reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import msgspec

T = TypeVar("T")

#: Threads a runtime runs sync user code in at once, unless ``Config(sync_threads=)`` says.
DEFAULT_SYNC_THREADS = 32


class ThreadStats(msgspec.Struct, frozen=True):
    """The threads for sync user code: ``limit`` at once, ``busy`` running (those whose caller
    gave up, ``abandoned``, included until they return) and ``waiting`` calls queued for one."""

    limit: int
    busy: int
    waiting: int
    abandoned: int


class _Slot:
    """One call's thread slot. ``lock`` orders the thread's start against the caller giving
    up; ``released`` and ``abandoned`` are read and written on the event loop only."""

    __slots__ = ("abandoned", "lock", "released", "skip", "started")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.skip = False  # given up before the code started: it must not start
        self.released = False
        self.abandoned = False


class SyncThreads:
    """At most ``limit`` threads running sync user code at once (see the module docstring).
    Create it inside the event loop it serves."""

    def __init__(self, limit: int = DEFAULT_SYNC_THREADS) -> None:
        self.limit = limit
        self._limiter = anyio.CapacityLimiter(limit)
        # anyio's own bound on the threads it hands out, never the binding one (ours is held
        # longer); without it anyio's default of 40 threads for the whole loop would apply
        self._pass = anyio.CapacityLimiter(limit)
        self._abandoned = 0

    def stats(self) -> ThreadStats:
        """How many threads are busy, and how many calls wait for one."""
        stats = self._limiter.statistics()
        return ThreadStats(self.limit, stats.borrowed_tokens, stats.tasks_waiting, self._abandoned)

    async def run(
        self, func: Callable[..., T], /, *args: Any, finish: bool = False, **kwargs: Any
    ) -> T:
        """``func(*args, **kwargs)`` in a worker thread, with this task's context variables,
        once a thread slot is free. Cancelled, it stops waiting at once (the thread runs on,
        its slot busy until it returns), or with ``finish`` only when the thread has returned
        (a dspy worker process answers a cancelled call once its work stopped)."""
        call = functools.partial(func, *args, **kwargs)
        slot = _Slot()
        await self._limiter.acquire_on_behalf_of(slot)
        loop = asyncio.get_running_loop()
        returned = loop.create_future()  # set once the code has returned (for ``finish``)

        def in_thread() -> T:
            with slot.lock:
                if slot.skip:
                    raise asyncio.CancelledError  # nobody waits: do not start the code
                slot.started = True
            try:
                return call()
            finally:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody counts any more
                    loop.call_soon_threadsafe(self._release, slot, returned)

        try:
            return await anyio.to_thread.run_sync(
                in_thread, abandon_on_cancel=True, limiter=self._pass
            )
        except BaseException:
            with slot.lock:
                started = slot.started
                slot.skip = not started
            if not started:
                self._limiter.release_on_behalf_of(slot)  # it never ran: free now
            elif finish:
                while not returned.done():  # (asyncio's cancellation: anyio cannot shield it)
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(returned)
            elif not slot.released:
                slot.abandoned = True  # it runs on: its slot frees when it returns
                self._abandoned += 1
            raise

    def _release(self, slot: _Slot, returned: asyncio.Future[None]) -> None:
        slot.released = True
        if not returned.done():
            returned.set_result(None)
        if slot.abandoned:
            self._abandoned -= 1
        self._limiter.release_on_behalf_of(slot)


_current: contextvars.ContextVar[SyncThreads | None] = contextvars.ContextVar(
    "dspex_sync_threads", default=None
)
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SyncThreads] = (
    weakref.WeakKeyDictionary()
)


def current_threads() -> SyncThreads:
    """The running runtime's threads for sync user code; outside a runtime, one per event
    loop with the default limit."""
    threads = _current.get()
    if threads is not None:
        return threads
    loop = asyncio.get_running_loop()
    threads = _per_loop.get(loop)
    if threads is None:
        threads = _per_loop[loop] = SyncThreads()
    return threads


def use_threads(threads: SyncThreads) -> contextvars.Token[SyncThreads | None]:
    """Make ``threads`` the current ones in this context (and the tasks it starts)."""
    return _current.set(threads)


def reset_threads(token: contextvars.Token[SyncThreads | None]) -> None:
    """Undo :func:`use_threads`."""
    _current.reset(token)
