"""TaskSupervisor: one-off tasks whose failure is a message to their owner, as Elixir's
``Task.Supervisor`` (``async_nolink``, ``start_child``).

A task's crash never crashes its owner: the owner awaits the task's :class:`TaskRef`, or gets
a ``Down`` naming it. Tasks are bounded (``max_children``), cancelled when their owner exits,
and stopped with their supervisor (its shutdown timeout bounds the wait), in the supervision
tree's order. Starting a task does not wait on the supervisor's mailbox: the table of tasks is
updated at once, in the caller's step on the same event loop (a start is one synchronous step,
so no other code sees it half done); the supervisor's own callbacks handle owners that exit
and its shutdown.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, cast

from dspex.actors import Actor, ActorRef, Down, Node, Shutdown, TaskRef, current_actor
from dspex.errors import ConfigError, MaxChildren, NoProc
from dspex.supervision._spec import ChildSpec, Restart

log = logging.getLogger("dspex.supervision")
_ids = itertools.count(1)

#: What a task runs: a coroutine function and its arguments.
TaskFn = Callable[..., Coroutine[Any, Any, Any]]

#: Which ends of a task its owner hears of: ``"all"`` (OTP: a Down for every end, ``"normal"``
#: included) or ``"abnormal"`` (not a value, nor the owner's own :meth:`TaskRef.cancel`): for
#: owners whose tasks answer their own callers, a message per task would be a message per call.
Report = Literal["all", "abnormal"]


class TaskSupervisorRef(ActorRef):
    """The ref of a :class:`TaskSupervisor`, with its API as methods."""

    __slots__ = ()

    def async_nolink(
        self, fn: TaskFn, *args: Any, owner: ActorRef | None = None, report: Report = "all"
    ) -> TaskRef:
        """Run ``fn(*args)`` in a supervised task owned by ``owner`` (by default the actor
        whose callback or task is running here). The owner awaits the returned ref, or gets
        ``Down(ref.id, ref, reason)`` when the task ends (``"normal"`` after a value, the
        exception it raised, ``"shutdown"``, ``"killed"``; see :data:`Report`); the task is
        cancelled if the owner exits first. Raises ``MaxChildren`` when the supervisor is full
        and ``NoProc`` when it, or the owner, is not running."""
        proc = self._proc
        if not proc.alive:
            raise NoProc(f"{self!r} is not running (exit reason {proc.reason!r})")
        supervisor = cast(TaskSupervisor, proc.actor)
        return supervisor.spawn_task(fn, args, owner or current_actor(), True, report == "abnormal")

    def start_child(self, fn: TaskFn, *args: Any) -> TaskRef:
        """Run ``fn(*args)`` in a supervised task nobody is told about (fire and forget; its
        failure is logged). ``MaxChildren`` when full, ``NoProc`` when not running."""
        return self._supervisor().spawn_task(fn, args, None, False, False)

    def children(self, owner: ActorRef | None = None) -> list[TaskRef]:
        """The running tasks (only those of ``owner``, if given), in start order."""
        return self._supervisor().children(owner)

    def _supervisor(self) -> TaskSupervisor:
        proc = self._proc
        if not proc.alive or proc.actor is None:
            raise NoProc(f"{self!r} is not running (exit reason {proc.reason!r})")
        return cast(TaskSupervisor, proc.actor)


class TaskSupervisor(Actor):
    """Supervises one-off tasks (Elixir's ``Task.Supervisor``): start it on a node or under a
    supervisor (:meth:`child_spec`), then :meth:`TaskSupervisorRef.async_nolink` or
    :meth:`TaskSupervisorRef.start_child`.

    ``max_children`` bounds the tasks running at once (None: no bound). ``shutdown`` is how long
    its own stop waits for cancelled tasks to unwind. Tasks are ``temporary``: never restarted.
    """

    ref_type = TaskSupervisorRef
    trap_exit = True  # stopped after the exits already queued; terminate stops the tasks

    async def init(self, max_children: int | None = None) -> None:
        if max_children is not None and (
            not isinstance(max_children, int) or isinstance(max_children, bool) or max_children < 0
        ):
            raise ConfigError(f"max_children must be None or an int >= 0, got {max_children!r}")
        self._max_children = max_children
        self._tasks: dict[asyncio.Task[Any], TaskRef] = {}
        self._watched: dict[int, int] = {}  # owner pid -> our monitor on it
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._name = f"dspex:task of #{self.ref.pid}"
        self._proc.owned = self._tasks.keys()  # cancelled if this supervisor is killed
        # What _ended runs in: it reads no context variable, and without one given
        # add_done_callback copies the caller's context for every task (one loop runs them,
        # one at a time, so one context serves them all)
        self._ended_context = contextvars.Context()

    @classmethod
    async def start(
        cls, node: Node, *, max_children: int | None = None, name: str | None = None
    ) -> TaskSupervisorRef:
        """Start a task supervisor that is not itself supervised."""
        return cast(TaskSupervisorRef, await node.spawn(cls, max_children, name=name))

    @classmethod
    def child_spec(
        cls,
        id: Any,
        *,
        max_children: int | None = None,
        name: str | None = None,
        shutdown: Shutdown = 5.0,
        restart: Restart = "permanent",
    ) -> ChildSpec:
        """A ChildSpec that runs this task supervisor under another supervisor."""
        return ChildSpec(
            id=id, start=cls, args=(max_children,), name=name, shutdown=shutdown, restart=restart
        )

    # -- starting tasks (in the caller's step) ----------------------------------------------

    def spawn_task(
        self,
        fn: TaskFn,
        args: tuple[Any, ...],
        owner: ActorRef | None,
        monitored: bool,
        quiet: bool,
    ) -> TaskRef:
        """Start one task (the hot path of every module call: kept to the bare steps)."""
        if self._stopping:
            raise MaxChildren(f"{self.ref!r} is shutting down and starts no tasks")
        tasks = self._tasks
        limit = self._max_children
        if limit is not None and len(tasks) >= limit:
            raise MaxChildren(f"{self.ref!r} already runs max_children={limit} tasks")
        handle = TaskRef(next(_ids), None)
        if owner is not None:
            if not owner._proc.alive:
                raise NoProc(f"the owner {owner!r} of a new task is not alive")
            if owner.pid not in self._watched:  # once per owner: cancel its tasks when it exits
                self._watched[owner.pid] = self.monitor(owner)
            if monitored:
                handle.owner = owner
            handle._quiet = quiet
        task = self._loop.create_task(fn(*args), name=self._name)
        handle._task = task
        tasks[task] = handle  # also what the process cancels if this supervisor is killed
        task.add_done_callback(self._ended, context=self._ended_context)
        return handle

    def children(self, owner: ActorRef | None) -> list[TaskRef]:
        if owner is None:
            return list(self._tasks.values())
        return [h for h in self._tasks.values() if h.owner is owner]

    # -- tasks that end, owners that exit ---------------------------------------------------

    def _ended(self, task: asyncio.Task[Any]) -> None:
        handle = self._tasks.pop(task, None)
        if handle is None:
            return
        owner = handle.owner
        if task.cancelled():
            if owner is None or (handle._quiet and handle._requested):
                return
            reason: object = handle._reason or "killed"
        else:
            exc = task.exception()
            if exc is None:
                if owner is None or handle._quiet:
                    return
                reason = "normal"
            else:
                reason = exc
        if owner is None:
            if isinstance(reason, BaseException):
                self._log_crash(handle, reason)
            return
        if not handle._awaited and owner._proc.alive:
            handle._delivered = True
            owner._proc.info(Down(handle.id, handle, reason))

    def _log_crash(self, handle: TaskRef, reason: BaseException) -> None:
        log.error("%r: task %r crashed", self.ref, handle, exc_info=reason)

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Down) and isinstance(msg.actor, ActorRef):
            if self._watched.pop(msg.actor.pid, None) is not None:
                # the owner exited: its tasks are of no use to anyone
                pid = msg.actor.pid
                for task, handle in list(self._tasks.items()):
                    if handle.owner is not None and handle.owner.pid == pid:
                        task.cancel()
            return
        await super().handle_info(msg)

    async def terminate(self, reason: object) -> None:
        """Cancel every task and wait for them to unwind (the shutdown timeout bounds it)."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            self._tasks[task]._reason = "shutdown"
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
