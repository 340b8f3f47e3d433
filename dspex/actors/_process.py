"""One actor incarnation and its address: ``_Process`` (mailbox, links, monitors, timers, owned
tasks and the main loop), :class:`ActorRef`, the handle of a supervised task (:class:`TaskRef`,
see :class:`dspex.TaskSupervisor`), and the info messages that carry them (:class:`Exit`,
:class:`Down`, :class:`IdleTimeout`).

A process runs any :class:`Behaviour` (the GenServer callbacks) and needs from its node only the
event loop and a callback to forget it when it exits, so this module imports nothing of
:class:`~dspex.actors.Actor` or :class:`~dspex.actors.Node`, which are built on it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable, Collection, Generator
from typing import Any, Protocol

import msgspec

from dspex.actors._messages import (
    CALL,
    CAST,
    DEFAULT_CALL_TIMEOUT,
    INFO,
    KILL,
    KILLED,
    NOPROC,
    NOREPLY,
    NORMAL,
    STOP,
    Caller,
    Item,
    Overflow,
)
from dspex.errors import (
    ActorExited,
    CallingSelf,
    Ignored,
    MailboxFull,
    NoProc,
    StartError,
    Timeout,
    format_reason,
)

log = logging.getLogger("dspex.actors")

_UNSET: Any = object()
_IDLE: Any = object()

#: The actor whose callback (or one of whose tasks) is running in this context.
_CURRENT: contextvars.ContextVar[ActorRef | None] = contextvars.ContextVar(
    "dspex_current_actor", default=None
)


def current_actor() -> ActorRef | None:
    """The ref of the actor whose callback, or task, is running here; None outside actors."""
    return _CURRENT.get()


class Behaviour(Protocol):
    """The callbacks a process runs, one at a time, in mailbox order (see
    :class:`~dspex.actors.Actor`, which implements them)."""

    async def init(self, *args: Any) -> None: ...

    async def handle_call(self, msg: Any, caller: Caller) -> Any: ...

    async def handle_cast(self, msg: Any) -> None: ...

    async def handle_info(self, msg: Any) -> None: ...

    async def handle_continue(self, arg: Any) -> None: ...

    async def terminate(self, reason: object) -> None: ...


#: What a process calls once when it exits, so its node drops it from the process table and
#: the name registry.
Forget = Callable[["_Process"], None]


class _Process:
    """The node's record of one actor incarnation. Private: users hold :class:`ActorRef`."""

    __slots__ = (
        "abandon",
        "actor",
        "actor_type",
        "alive",
        "blocked",
        "capacity",
        "continuation",
        "exit_waiters",
        "forget",
        "halt_reason",
        "idle",
        "ignored",
        "kill_reason",
        "links",
        "loop",
        "mailbox",
        "monitors",
        "name",
        "overflow",
        "owned",
        "parent",
        "pending",
        "pid",
        "reason",
        "ref",
        "started",
        "stop_reason",
        "task",
        "task_name",
        "tasks",
        "terminating",
        "timers",
        "trap_exit",
        "waiter",
        "watching",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        forget: Forget,
        pid: int,
        actor: Behaviour,
        ref_type: type[ActorRef],
        *,
        name: str | None,
        capacity: int,
        overflow: Overflow,
        trap_exit: bool,
        parent: _Process | None,
    ):
        self.loop = loop
        self.forget = forget
        self.pid = pid
        self.actor: Behaviour | None = actor
        self.actor_type = type(actor).__name__
        self.name = name
        self.capacity = capacity
        self.overflow = overflow
        self.trap_exit = trap_exit
        self.ref: ActorRef = ref_type(self, pid)
        self.mailbox: deque[Item] = deque()
        self.blocked: deque[Item] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.pending: set[asyncio.Future[Any]] = set()
        # what to run if the caller of a pending call gives up first (Caller.on_abandon)
        self.abandon: dict[asyncio.Future[Any], Callable[[], object]] = {}
        self.links: set[_Process] = set()
        self.monitors: dict[int, _Process] | None = None  # monitors on this actor -> watcher
        self.watching: dict[int, _Process] | None = None  # this actor's monitors -> target
        self.timers: set[asyncio.TimerHandle] | None = None
        self.tasks: set[asyncio.Task[Any]] | None = None
        # tasks another structure tracks for this actor (a TaskSupervisor's table): cancelled
        # when it exits, like its own
        self.owned: Collection[asyncio.Task[Any]] | None = None
        self.exit_waiters: list[asyncio.Future[object]] | None = None
        self.parent = parent
        self.task: asyncio.Task[None] | None = None
        self.task_name: str | None = None  # of its owned tasks, built with the first one
        self.alive = True
        self.reason: object = None
        self.stop_reason: object = _UNSET
        self.kill_reason: object = _UNSET
        self.halt_reason: object = _UNSET
        self.terminating = False
        self.continuation: object = _UNSET  # Actor.continue_with: run before the next message
        self.idle: float | None = None  # Actor.timeout_after: for the next wait only
        self.ignored = False  # Actor.ignore in init
        self.started = False  # init has returned

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

    def withdraw(self, task: TaskRef) -> None:
        """Drop the queued Down of ``task`` (its owner awaited it instead)."""
        kept = [it for it in self.mailbox if not (type(it[1]) is Down and it[1].actor is task)]
        if len(kept) != len(self.mailbox):
            self.mailbox.clear()
            self.mailbox.extend(kept)

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

    def halt(self, reason: object) -> None:
        """Stop now with ``reason``: the current callback is cancelled and the queued messages
        are not handled, then ``terminate`` runs (a supervisor's shutdown of an actor that does
        not trap exits; see docs/architecture.md)."""
        if not self.alive or self.terminating or self.halt_reason is not _UNSET:
            return
        self.halt_reason = reason
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    def shutdown_by(self, parent: ActorRef, reason: object) -> None:
        """A supervisor's request to stop (OTP's ``exit(child, shutdown)``): an actor that traps
        exits gets the :class:`Exit` message behind those already queued and stops gracefully;
        any other actor is halted at once (:meth:`halt`)."""
        if self.trap_exit:
            self.info(Exit(parent, reason))
        else:
            self.halt(reason)

    def is_running_here(self) -> bool:
        """Whether the caller is this actor's own task (one of its callbacks)."""
        return self.task is not None and asyncio.current_task() is self.task

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
            self.task_name = f"dspex:task of #{self.pid}"  # once: built with the first task
        task: asyncio.Task[Any] = self.loop.create_task(coro, name=self.task_name)
        tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def cancel_tasks(self) -> None:
        """Cancel every task the actor owns; the actor itself keeps running."""
        for task in list(self.tasks or ()):
            task.cancel()

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
        self.forget(self)
        if self.timers:
            for handle in self.timers:
                handle.cancel()
            self.timers = None
        if self.tasks:
            for task in self.tasks:
                task.cancel()
        if self.owned:
            for task in self.owned:
                task.cancel()
        for fut in self.pending:
            if not fut.done():
                fut.set_exception(ActorExited(self.ref, reason))
        self.mailbox.clear()
        self.abandon.clear()  # its tasks are cancelled: nothing is left to abandon
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
        _CURRENT.set(self.ref)  # this task's own context: its callbacks and the tasks it starts
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
        if self.ignored or self.stop_reason is not _UNSET:
            # OTP's init returning :ignore or {:stop, reason}: exit without terminate
            reason = NORMAL if self.ignored else self.stop_reason
            self.finish(reason)
            if not started.done():
                error = Ignored(self.ref) if self.ignored else StartError(self.ref, reason)
                started.set_exception(error)
            return
        parent = self.parent
        if parent is not None:
            if parent.alive:
                parent.links.add(self)
                self.links.add(parent)
            else:
                self.exit_signal(parent.ref, NOPROC)
        self.started = True
        if not started.done():
            started.set_result(None)
        await self._loop(actor)

    async def _wait_idle(self, w: asyncio.Future[Any], idle: float) -> Any:
        def fire() -> None:
            if self.waiter is w:
                self.waiter = None
                w.set_result(_IDLE)

        timer = self.loop.call_later(idle, fire)
        try:
            return await w
        finally:
            timer.cancel()

    async def _loop(self, actor: Behaviour) -> None:
        mailbox = self.mailbox
        parent = self.parent
        reason: object = NORMAL
        # a reply held back until terminate has run: OTP's {stop, Reason, Reply, State}
        held: tuple[asyncio.Future[Any], Any] | None = None
        try:
            while True:
                if self.stop_reason is not _UNSET:
                    reason = self.stop_reason
                    break
                if self.continuation is not _UNSET:
                    arg, self.continuation = self.continuation, _UNSET
                    await actor.handle_continue(arg)
                    continue
                if not mailbox:
                    w: asyncio.Future[Any] = self.loop.create_future()
                    self.waiter = w
                    idle = self.idle
                    if idle is None:
                        await w
                    elif await self._wait_idle(w, idle) is _IDLE:
                        self.idle = None
                        await actor.handle_info(IdleTimeout(idle))
                    continue
                self.idle = None  # a message was there: the idle timeout does not apply
                kind, msg, fut = mailbox.popleft()
                if self.blocked:
                    self._admit_blocked()
                if kind == CALL:
                    assert fut is not None
                    if fut.done():  # the caller gave up while the message waited
                        continue
                    result = await actor.handle_call(msg, Caller(fut, self.abandon))
                    if result is not NOREPLY:
                        if self.abandon:
                            self.abandon.pop(fut, None)
                        if self.stop_reason is not _UNSET:
                            held = (fut, result)
                        elif not fut.done():
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
            if not self.alive or self.halt_reason is _UNSET:
                # Killed (finish already ran) or cancelled from outside, which counts as a kill.
                self.finish(KILLED)
                return
            reason = self.halt_reason  # halted: terminate still runs
        except Exception as exc:
            reason = exc
            log.error("%r crashed", self.ref, exc_info=exc)
        self.terminating = True
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
        finally:
            if held is not None and not held[0].done():
                held[0].set_result(held[1])  # after terminate, as OTP replies
        self.finish(reason)


# -- the address -------------------------------------------------------------------------------


def _expire(fut: asyncio.Future[Any], ref: ActorRef, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(Timeout(f"call to {ref!r} timed out after {timeout:g} s"))


class ActorRef:
    """The address of one actor incarnation: cheap to copy, safe to keep after the actor exits.

    A restarted actor is a new incarnation with a new ref; address long-lived services by name
    (:meth:`dspex.actors.Node.whereis`) to follow restarts.
    """

    __slots__ = ("_proc", "pid")

    def __init__(self, proc: _Process, pid: int):
        self._proc = proc
        self.pid = pid

    def __repr__(self) -> str:
        proc = self._proc
        name = f" {proc.name!r}" if proc.name is not None else ""
        return f"<ActorRef #{self.pid} {proc.actor_type}{name}>"

    @property
    def name(self) -> str | None:
        """The name this actor is registered under, if any."""
        return self._proc.name

    @property
    def alive(self) -> bool:
        """Whether this incarnation is still running."""
        return self._proc.alive

    @property
    def exit_reason(self) -> object:
        """The exit reason once the actor has exited (``None`` while it is alive)."""
        return self._proc.reason

    async def call(self, msg: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> Any:
        """Send ``msg`` to ``handle_call`` and wait for the reply.

        Raises :class:`~dspex.errors.Timeout` after ``timeout`` seconds even if the actor is stuck
        (a late reply is dropped), :class:`~dspex.errors.ActorExited` at once if the actor exits
        before replying, :class:`~dspex.errors.NoProc` if it is not alive, and
        :class:`~dspex.errors.MailboxFull` if its mailbox is full and its policy is ``"raise"``
        (with ``"wait"`` the call waits for room, within the same timeout), and
        :class:`~dspex.errors.CallingSelf` at once from the actor's own callbacks (OTP exits
        ``calling_self``).
        """
        p = self._proc
        if not p.alive:
            raise NoProc(f"{self!r} is not alive (exit reason {p.reason!r})")
        if p.task is asyncio.current_task():
            raise CallingSelf(
                f"{self!r} called itself: its own callback would wait for its own reply; "
                "handle the message directly, or reply later from a task (start_task)"
            )
        loop = p.loop
        fut: asyncio.Future[Any] = loop.create_future()
        item = (CALL, msg, fut)
        if len(p.mailbox) < p.capacity:
            p.put(item)
        elif p.overflow == "wait":
            p.blocked.append(item)
        else:
            raise MailboxFull(f"mailbox of {self!r} is full ({p.capacity} messages)")
        del item  # the mailbox holds it now: this frame need not keep it alive while the call runs
        pending = p.pending
        pending.add(fut)
        timer = (
            loop.call_later(timeout, _expire, fut, self, timeout) if timeout is not None else None
        )
        try:
            return await fut
        except BaseException:  # timed out, cancelled, or the actor exited: the caller gave up
            abandon = p.abandon.pop(fut, None) if p.abandon else None
            if abandon is not None:
                abandon()  # what the actor asked to run then (Caller.on_abandon)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            pending.discard(fut)

    def cast(self, msg: Any) -> None:
        """Send ``msg`` to ``handle_cast`` without waiting.

        Never blocks and never raises for a dead actor (the message is dropped, as in OTP). Raises
        :class:`~dspex.errors.MailboxFull` if the actor's bounded mailbox is full.
        """
        self._proc.offer((CAST, msg, None))

    def send(self, msg: Any) -> None:
        """Send ``msg`` to ``handle_info``; the same rules as :meth:`cast`."""
        self._proc.offer((INFO, msg, None))

    async def wait(self) -> object:
        """Wait until the actor has exited and return its exit reason."""
        return await self._proc.wait_exit()


# -- the address of a supervised task ---------------------------------------------------------


class TaskRef:
    """The handle of one task started by a TaskSupervisor.

    ``await ref`` returns the task's value, or raises ``ActorExited`` whose ``reason`` is the
    exception the task raised (also its ``__cause__``), ``"shutdown"`` or ``"killed"``; an owner
    that awaits the handle gets no ``Down`` for it. :meth:`cancel` stops the task.
    """

    __slots__ = (
        "_awaited",
        "_delivered",
        "_quiet",
        "_reason",
        "_requested",
        "_task",
        "id",
        "owner",
    )

    def __init__(self, id: int, owner: ActorRef | None) -> None:
        self.id = id  # the ``monitor`` of the owner's Down
        self.owner = owner
        self._task: asyncio.Task[Any] | None = None
        self._awaited = False  # someone awaits it: no Down
        self._delivered = False  # a Down was sent to the owner
        self._reason: object = None  # set by the supervisor that cancelled it ("shutdown")
        self._requested = False  # cancelled through cancel()
        self._quiet = False  # no Down for a value or the owner's own cancel (report="abnormal")

    def __repr__(self) -> str:
        state = "running" if self._task is not None and not self._task.done() else "done"
        return f"<TaskRef #{self.id} {state}>"

    def __await__(self) -> Generator[Any, None, Any]:
        return self._join().__await__()

    async def _join(self) -> Any:
        task = self._task
        assert task is not None
        self._awaited = True
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                self._awaited = False  # the awaiting side was cancelled: a Down is due again
        if self._delivered and self.owner is not None:
            self.owner._proc.withdraw(self)  # the Down already queued for it: awaited instead
        reason = self._reason if self._reason is not None else _reason_of(task)
        if reason != "normal":
            error = ActorExited(self, reason)
            if isinstance(reason, BaseException):
                raise error from reason
            raise error
        return task.result()

    def cancel(self) -> None:
        """Stop the task (its owner's Down says ``"killed"``)."""
        if self._task is not None and not self._task.done():
            self._requested = True
            self._task.cancel()

    async def join(self) -> object:
        """Wait until the task has ended and return why (:attr:`reason`), never raising; its
        owner gets no Down for it then (e.g. to drain in ``terminate``)."""
        task = self._task
        assert task is not None
        self._awaited = True
        await asyncio.wait({task})
        return self.reason

    def done(self) -> bool:
        """Whether the task has ended."""
        return self._task is not None and self._task.done()

    @property
    def reason(self) -> object:
        """Why the task ended (None while it runs): ``"normal"`` after a value, the exception
        it raised, ``"shutdown"`` when its supervisor stopped, ``"killed"`` when cancelled."""
        task = self._task
        if task is None or not task.done():
            return None
        return self._reason if self._reason is not None else _reason_of(task)


def _reason_of(task: asyncio.Task[Any]) -> object:
    if task.cancelled():
        return "killed"
    exc = task.exception()
    return "normal" if exc is None else exc


class Exit(msgspec.Struct, frozen=True):
    """An exit signal turned into a message: delivered as info to actors that trap exits.

    ``actor`` is the linked actor that exited (or the sender of an explicit exit signal; ``None``
    when it came from outside any actor) and ``reason`` its exit reason.
    """

    actor: ActorRef | None
    reason: Any


class IdleTimeout(msgspec.Struct, frozen=True):
    """No message arrived for ``seconds`` after a callback that asked for it
    (:meth:`~dspex.actors.Actor.timeout_after`); delivered to ``handle_info`` (OTP's
    ``:timeout``)."""

    seconds: float


class Down(msgspec.Struct, frozen=True):
    """A monitored actor exited; delivered as info to the monitoring actor. Also the end of a
    task the actor owns and did not await (``actor`` is its :class:`TaskRef`, ``monitor`` its
    id, ``reason`` ``"normal"`` after a value: see :class:`dspex.TaskSupervisor`).

    ``reason`` is ``"noproc"`` when the target was already dead when the monitor was set up.
    """

    monitor: int
    actor: ActorRef | TaskRef
    reason: Any
