"""One running actor: its mailbox, links, monitors, timers, owned tasks and its main loop."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from dspex.actors._messages import KILL, KILLED, NOPROC, NORMAL, Down, Exit, Overflow
from dspex.actors._ref import CALL, CAST, INFO, STOP, ActorRef, Caller
from dspex.errors import ActorExited, MailboxFull, StartError, format_reason

if TYPE_CHECKING:
    from dspex.actors._actor import Actor
    from dspex.actors._node import Node

log = logging.getLogger("dspex.actors")

#: Returned from ``handle_call`` to reply later through the :class:`Caller`.
NOREPLY: Any = object()

_UNSET: Any = object()

Item = tuple[int, Any, "asyncio.Future[Any] | None"]


class _Process:
    """The runtime's record of one actor incarnation. Private: users hold :class:`ActorRef`."""

    __slots__ = (
        "actor",
        "actor_type",
        "alive",
        "blocked",
        "capacity",
        "exit_waiters",
        "kill_reason",
        "links",
        "loop",
        "mailbox",
        "monitors",
        "name",
        "node",
        "overflow",
        "parent",
        "pending",
        "pid",
        "reason",
        "ref",
        "stop_reason",
        "task",
        "tasks",
        "timers",
        "trap_exit",
        "waiter",
        "watching",
    )

    def __init__(
        self,
        node: Node,
        pid: int,
        actor: Actor,
        *,
        name: str | None,
        capacity: int,
        overflow: Overflow,
        trap_exit: bool,
    ):
        self.node = node
        self.loop = node.loop
        self.pid = pid
        self.actor: Actor | None = actor
        self.actor_type = type(actor).__name__
        self.name = name
        self.capacity = capacity
        self.overflow = overflow
        self.trap_exit = trap_exit
        self.ref: ActorRef = type(actor).ref_type(self, pid)
        self.mailbox: deque[Item] = deque()
        self.blocked: deque[Item] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.pending: set[asyncio.Future[Any]] = set()
        self.links: set[_Process] = set()
        self.monitors: dict[int, _Process] | None = None  # monitors on this actor -> watcher
        self.watching: dict[int, _Process] | None = None  # this actor's monitors -> target
        self.timers: set[asyncio.TimerHandle] | None = None
        self.tasks: set[asyncio.Task[Any]] | None = None
        self.exit_waiters: list[asyncio.Future[object]] | None = None
        self.parent: _Process | None = None
        self.task: asyncio.Task[None] | None = None
        self.alive = True
        self.reason: object = None
        self.stop_reason: object = _UNSET
        self.kill_reason: object = _UNSET

    # -- delivery -------------------------------------------------------------------------------

    def put(self, item: Item) -> None:
        """Append to the mailbox regardless of capacity (system messages, admitted senders)."""
        self.mailbox.append(item)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def offer(self, item: Item) -> None:
        """Deliver a cast or info message: dropped if dead, MailboxFull if full."""
        if not self.alive:
            return
        if len(self.mailbox) >= self.capacity:
            raise MailboxFull(f"mailbox of {self.ref!r} is full ({self.capacity} messages)")
        self.put(item)

    def info(self, msg: Any) -> None:
        """Deliver a runtime-generated info message (Exit, Down, timers): never dropped for size."""
        if self.alive:
            self.put((INFO, msg, None))

    def _admit_blocked(self) -> None:
        blocked = self.blocked
        while blocked and len(self.mailbox) < self.capacity:
            item = blocked.popleft()
            fut = item[2]
            if fut is None or not fut.done():
                self.put(item)

    # -- signals --------------------------------------------------------------------------------

    def exit_signal(self, sender: ActorRef | None, reason: object) -> None:
        """Receive an exit signal from a linked actor or an explicit ``exit``, as OTP does."""
        if not self.alive:
            return
        if reason == KILL:
            self.kill(KILLED)
        elif self.trap_exit:
            self.info(Exit(sender, reason))
        elif reason != NORMAL:
            self.kill(reason)

    def kill(self, reason: object) -> None:
        """End the actor now, with ``reason``: no ``terminate``, its task is cancelled."""
        if not self.alive:
            return
        self.kill_reason = reason
        self.finish(reason)
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    def request_stop(self, reason: object) -> None:
        """Stop after the current handler (or at once if idle); ``terminate`` runs."""
        if self.alive and self.stop_reason is _UNSET:
            self.stop_reason = reason
            w = self.waiter
            if w is not None:
                self.waiter = None
                if not w.done():
                    w.set_result(None)

    def stop_gracefully(self, reason: object) -> None:
        """Queue a stop behind the messages already in the mailbox (a supervisor's shutdown)."""
        if self.alive:
            self.put((STOP, reason, None))

    # -- owned resources ----------------------------------------------------------------------

    def add_timer(self, delay: float, msg: Any) -> asyncio.TimerHandle:
        timers = self.timers
        if timers is None:
            timers = self.timers = set()
        handle: asyncio.TimerHandle

        def fire() -> None:
            timers.discard(handle)
            self.info(msg)

        handle = self.loop.call_later(delay, fire)
        timers.add(handle)
        return handle

    def start_task(self, coro: Any) -> asyncio.Task[Any]:
        tasks = self.tasks
        if tasks is None:
            tasks = self.tasks = set()
        task: asyncio.Task[Any] = self.loop.create_task(coro, name=f"dspex:task of #{self.pid}")
        tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self.tasks is not None:
            self.tasks.discard(task)
        if task.cancelled() or not self.alive:
            return
        exc = task.exception()
        if exc is not None:
            log.error("task of %r crashed; the actor exits", self.ref, exc_info=exc)
            self.kill(exc)

    async def wait_exit(self) -> object:
        if not self.alive:
            return self.reason
        fut: asyncio.Future[object] = self.loop.create_future()
        if self.exit_waiters is None:
            self.exit_waiters = []
        self.exit_waiters.append(fut)
        return await fut

    # -- exit -----------------------------------------------------------------------------------

    def finish(self, reason: object) -> None:
        """Mark the actor dead and tell everyone who depends on it. Idempotent."""
        if not self.alive:
            return
        self.alive = False
        self.reason = reason
        self.actor = None
        self.node._forget(self)
        if self.timers:
            for handle in self.timers:
                handle.cancel()
            self.timers = None
        if self.tasks:
            for task in self.tasks:
                task.cancel()
        for fut in self.pending:
            if not fut.done():
                fut.set_exception(ActorExited(self.ref, reason))
        self.mailbox.clear()
        self.blocked.clear()
        if self.watching:
            for mref, target in self.watching.items():
                if target.monitors is not None:
                    target.monitors.pop(mref, None)
            self.watching = None
        if self.monitors:
            monitors, self.monitors = self.monitors, None
            for mref, watcher in monitors.items():
                if watcher.watching is not None:
                    watcher.watching.pop(mref, None)
                watcher.info(Down(mref, self.ref, reason))
        if self.links:
            links, self.links = self.links, set()
            for other in links:
                other.links.discard(self)
                other.exit_signal(self.ref, reason)
        if self.exit_waiters:
            for fut in self.exit_waiters:
                if not fut.done():
                    fut.set_result(reason)
            self.exit_waiters = None

    # -- the main loop --------------------------------------------------------------------------

    async def main(self, args: tuple[Any, ...], started: asyncio.Future[None]) -> None:
        actor = self.actor
        assert actor is not None
        try:
            await actor.init(*args)
        except asyncio.CancelledError:
            reason = self.kill_reason if self.kill_reason is not _UNSET else KILLED
            self.finish(reason)
            if not started.done():
                started.set_exception(StartError(self.ref, reason))
            return
        except Exception as exc:
            self.finish(exc)
            if not started.done():
                started.set_exception(StartError(self.ref, exc))
            return
        if not self.alive:  # killed by a signal that arrived while init was finishing
            if not started.done():
                started.set_exception(StartError(self.ref, self.reason))
            return
        parent = self.parent
        if parent is not None:
            if parent.alive:
                parent.links.add(self)
                self.links.add(parent)
            else:
                self.exit_signal(parent.ref, NOPROC)
        if not started.done():
            started.set_result(None)
        await self._loop(actor)

    async def _loop(self, actor: Actor) -> None:
        mailbox = self.mailbox
        parent = self.parent
        reason: object = NORMAL
        try:
            while True:
                if self.stop_reason is not _UNSET:
                    reason = self.stop_reason
                    break
                if not mailbox:
                    w: asyncio.Future[None] = self.loop.create_future()
                    self.waiter = w
                    await w
                    continue
                kind, msg, fut = mailbox.popleft()
                if self.blocked:
                    self._admit_blocked()
                if kind == CALL:
                    assert fut is not None
                    if fut.done():  # the caller gave up while the message waited
                        continue
                    result = await actor.handle_call(msg, Caller(fut))
                    if result is not NOREPLY and not fut.done():
                        fut.set_result(result)
                elif kind == CAST:
                    await actor.handle_cast(msg)
                elif kind == INFO:
                    if (
                        type(msg) is Exit
                        and parent is not None
                        and msg.actor is parent.ref
                        and self.trap_exit
                    ):
                        reason = msg.reason  # OTP: a trapped exit from the parent stops us
                        break
                    await actor.handle_info(msg)
                else:
                    reason = msg
                    break
        except asyncio.CancelledError:
            # Killed (finish already ran) or cancelled from outside, which counts as a kill.
            self.finish(KILLED)
            return
        except Exception as exc:
            reason = exc
            log.error("%r crashed", self.ref, exc_info=exc)
        try:
            await actor.terminate(reason)
        except asyncio.CancelledError:
            self.finish(KILLED)
            return
        except Exception as exc:
            log.error(
                "terminate of %r raised while exiting with %s",
                self.ref,
                format_reason(reason),
                exc_info=exc,
            )
            reason = exc
        self.finish(reason)
