"""Node: the process table, the name registry and the operations on actors by ref or name.

A node runs anything :class:`Spawnable`; :class:`~dspex.actors.Actor`, the base class users
subclass, is built on top of it (as gen_server is built on Erlang's processes), so this module
does not import it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

from dspex.actors._messages import DEFAULT_CALL_TIMEOUT, KILLED, NORMAL, SHUTDOWN, Overflow
from dspex.actors._process import ActorRef, Behaviour, _Process
from dspex.errors import ActorError, CallingSelf, ConfigError, NameTaken, NoProc

log = logging.getLogger("dspex.actors")


class Spawnable(Behaviour, Protocol):
    """What :meth:`Node.spawn` starts: the callbacks, the defaults of the spawn options and the
    ref type as class attributes, and the two slots the node fills in (its process and its
    node). :class:`~dspex.actors.Actor` is the one implementation."""

    @property
    def mailbox_size(self) -> int: ...

    @property
    def overflow(self) -> Overflow: ...

    @property
    def trap_exit(self) -> bool: ...

    @property
    def ref_type(self) -> type[ActorRef]: ...

    _proc: _Process
    _node: Node


A = TypeVar("A", bound=Spawnable)

#: How long a stop waits for the actor to finish ``terminate``; ``"brutal_kill"`` kills at once
#: and ``"infinity"`` waits as long as it takes.
Shutdown = float | Literal["brutal_kill", "infinity"]

#: How long to wait for a cancelled task to unwind before giving up on it.
_UNWIND_TIMEOUT = 1.0


class Node:
    """The actor system of one event loop: spawns actors, finds them by name, stops them.

    ``Node()`` inside a running event loop runs its actors on that loop (or pass ``loop``);
    ActorError outside one. A :class:`dspex.Runtime` holds one while it runs
    (``runtime.node``), with a root supervisor, the router and the module supervisor on it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise ActorError(
                    "a Node runs its actors on an event loop: create it inside one, or pass loop="
                ) from None
        self._loop = loop
        self._procs: dict[int, _Process] = {}
        self._names: dict[str, _Process] = {}
        self._name_waiters: dict[str, list[asyncio.Future[ActorRef]]] = {}
        self._pids = itertools.count(1)
        self._forget_proc = self._forget  # one bound method for every process

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this node's actors run on."""
        return self._loop

    # -- spawning -------------------------------------------------------------------------------

    async def spawn(
        self,
        factory: type[A],
        *args: Any,
        name: str | None = None,
        mailbox_size: int | None = None,
        overflow: Overflow | None = None,
        trap_exit: bool | None = None,
        start_timeout: float | None = None,
        _parent: _Process | None = None,
    ) -> ActorRef:
        """Start an actor: build it with ``factory()``, run ``await actor.init(*args)``, return
        its ref once ``init`` has returned.

        Options default to the actor class's attributes. ``name`` registers the actor
        (``NameTaken`` if a live actor has it). If ``init`` raises or takes longer than
        ``start_timeout``, the actor is gone and ``StartError`` is raised with the cause.
        ActorError if ``factory`` does not build an actor (see :class:`Spawnable`).
        """
        loop = self._loop
        if name is not None and name in self._names:
            raise NameTaken(f"the name {name!r} is registered to {self._names[name].ref!r}")
        actor = factory()
        try:
            capacity = mailbox_size if mailbox_size is not None else actor.mailbox_size
            policy = overflow if overflow is not None else actor.overflow
            trapping = actor.trap_exit if trap_exit is None else trap_exit
            ref_type = actor.ref_type
        except AttributeError:
            raise ActorError(
                f"{factory!r} did not build an Actor (got {type(actor).__name__})"
            ) from None
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"mailbox_size must be a positive int, got {capacity!r}")
        if policy not in ("raise", "wait"):
            raise ConfigError(f"overflow must be 'raise' or 'wait', got {policy!r}")
        pid = next(self._pids)
        proc = _Process(
            loop,
            self._forget_proc,
            pid,
            actor,
            ref_type,
            name=name,
            capacity=capacity,
            overflow=policy,
            trap_exit=trapping,
            parent=_parent,
        )
        actor._proc = proc
        actor._node = self
        self._procs[pid] = proc
        if name is not None:
            self._names[name] = proc
            self._wake_name_waiters(name, proc)
        started: asyncio.Future[None] = loop.create_future()
        proc.task = loop.create_task(proc.main(args, started), name=f"dspex:actor #{pid}")
        timer = (
            loop.call_later(start_timeout, proc.kill, ("start_timeout", start_timeout))
            if start_timeout is not None
            else None
        )
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            proc.kill(KILLED)  # the spawner gave up: never leave the child behind
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return proc.ref

    def _forget(self, proc: _Process) -> None:
        self._procs.pop(proc.pid, None)
        if proc.name is not None and self._names.get(proc.name) is proc:
            del self._names[proc.name]

    # -- names ----------------------------------------------------------------------------------

    def whereis(self, name: str) -> ActorRef | None:
        """The live actor registered under ``name``, or None."""
        proc = self._names.get(name)
        return proc.ref if proc is not None else None

    def register(self, name: str, ref: ActorRef) -> None:
        """Register a live actor under ``name``; the entry goes when the actor exits."""
        proc = ref._proc
        if not proc.alive:
            raise NoProc(f"cannot register {name!r}: {ref!r} is not alive")
        holder = self._names.get(name)
        if holder is not None and holder is not proc:
            raise NameTaken(f"the name {name!r} is registered to {holder.ref!r}")
        if proc.name is not None and proc.name != name:
            raise NameTaken(f"{ref!r} is already registered as {proc.name!r}")
        proc.name = name
        self._names[name] = proc
        self._wake_name_waiters(name, proc)

    async def wait_for_name(self, name: str, timeout: float | None) -> ActorRef:
        """The live actor registered under ``name``, waiting up to ``timeout`` seconds for one
        to register (e.g. a restarted incarnation); ``NoProc`` if none does in time."""
        proc = self._names.get(name)
        if proc is not None:
            return proc.ref
        fut: asyncio.Future[ActorRef] = self._loop.create_future()
        self._name_waiters.setdefault(name, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise NoProc(
                f"no actor registered under the name {name!r} within {timeout} s"
            ) from None
        finally:
            waiters = self._name_waiters.get(name)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._name_waiters[name]

    def _wake_name_waiters(self, name: str, proc: _Process) -> None:
        for fut in self._name_waiters.pop(name, ()):
            if not fut.done():
                fut.set_result(proc.ref)

    def fail_name_waiters(self, name: str, error: Callable[[], BaseException]) -> None:
        """Make every :meth:`wait_for_name` now waiting for ``name`` raise ``error()`` (a fresh
        exception each): no actor will take that name (e.g. its supervisor gave up on it)."""
        for fut in self._name_waiters.pop(name, ()):
            if not fut.done():
                fut.set_exception(error())

    def unregister(self, name: str) -> None:
        """Remove ``name`` from the registry (the actor keeps running); ``NoProc`` if no actor
        is registered under it (as ``Process.unregister/1`` raises)."""
        proc = self._names.pop(name, None)
        if proc is None:
            raise NoProc(f"cannot unregister {name!r}: no actor is registered under that name")
        proc.name = None

    def resolve(self, target: ActorRef | str) -> ActorRef:
        """The ref for ``target`` (a ref, or a registered name); ``NoProc`` for unknown names."""
        if isinstance(target, ActorRef):
            return target
        proc = self._names.get(target)
        if proc is None:
            raise NoProc(f"no actor is registered under the name {target!r}")
        return proc.ref

    # -- messages and signals -------------------------------------------------------------------

    async def call(
        self, target: ActorRef | str, msg: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT
    ) -> Any:
        """:meth:`ActorRef.call` on a ref or a registered name."""
        return await self.resolve(target).call(msg, timeout)

    def cast(self, target: ActorRef | str, msg: Any) -> None:
        """:meth:`ActorRef.cast` on a ref or a registered name (unknown names drop the message)."""
        proc = target._proc if isinstance(target, ActorRef) else self._names.get(target)
        if proc is not None:
            proc.ref.cast(msg)

    def send_after(self, target: ActorRef, delay: float, msg: Any) -> asyncio.TimerHandle:
        """Deliver ``msg`` to ``target``'s ``handle_info`` after ``delay`` seconds."""
        return target._proc.add_timer(delay, msg)

    def exit(self, target: ActorRef, reason: object) -> None:
        """Send an exit signal, as ``Process.exit/2``.

        ``"kill"`` always kills; an actor trapping exits gets an :class:`Exit` message; otherwise
        ``"normal"`` is ignored and any other reason kills the actor with that reason. From an
        actor's own callback to itself, ``"normal"`` ends it too (OTP: the calling process
        exits): the callback does not go on.
        """
        proc = target._proc
        if reason == NORMAL and proc.alive and not proc.trap_exit and proc.is_running_here():
            proc.kill(NORMAL)
            raise asyncio.CancelledError  # the calling process exits: nothing after this runs
        proc.exit_signal(None, reason)

    async def stop(
        self, target: ActorRef, reason: object = NORMAL, timeout: Shutdown = 5.0
    ) -> object:
        """Stop an actor gracefully (``terminate`` runs, after the messages already queued), or
        kill it after ``timeout`` (at once with ``"brutal_kill"``, never with ``"infinity"``).
        Returns the exit reason once the actor's task has ended.

        As ``GenServer.stop/3``: ``NoProc`` if the actor is not alive, ``CallingSelf`` from the
        actor's own callback (use :meth:`Actor.stop`), which leaves the actor running.
        """
        proc = target._proc
        if not proc.alive:
            raise NoProc(f"cannot stop {target!r}: it is not alive (exit reason {proc.reason!r})")
        if proc.is_running_here():
            raise CallingSelf(f"{target!r} tried to stop itself with Node.stop; use Actor.stop")
        return await self._shutdown(proc, timeout, lambda: proc.stop_gracefully(reason))

    async def shutdown_child(self, target: ActorRef, parent: ActorRef, timeout: Shutdown) -> object:
        """A supervisor's stop of its child ``target`` (OTP's ``supervisor:shutdown/2``), with
        reason ``"shutdown"``: a child that traps exits stops gracefully, after its queued
        messages; any other stops at once (its callback is cancelled), then its ``terminate``
        runs. Killed after ``timeout`` either way; returns its exit reason."""
        proc = target._proc
        return await self._shutdown(proc, timeout, lambda: proc.shutdown_by(parent, SHUTDOWN))

    async def _shutdown(self, proc: _Process, timeout: Shutdown, ask: Callable[[], None]) -> object:
        if proc.alive:
            if timeout == "brutal_kill":
                proc.kill(KILLED)
            else:
                ask()
                waiter = proc.loop.create_task(proc.wait_exit(), name="dspex:wait-exit")
                limit = None if timeout == "infinity" else float(timeout)
                done, _ = await asyncio.wait({waiter}, timeout=limit)
                if not done:
                    waiter.cancel()
                    log.warning("%r did not stop within %s s; killing it", proc.ref, timeout)
                    proc.kill(KILLED)
        task = proc.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            done, _ = await asyncio.wait({task}, timeout=_UNWIND_TIMEOUT)
            if not done:
                log.error("the task of %r ignores cancellation", proc.ref)
        return proc.reason

    def cancel_tasks(self, target: ActorRef) -> None:
        """Cancel every task ``target`` owns (see :meth:`Actor.start_task`): its work in
        flight, e.g. to cut a drain short. The actor keeps running; a cancelled task does not
        kill its owner."""
        target._proc.cancel_tasks()

    def processes(self, kind: type[object] | None = None) -> list[ActorRef]:
        """Refs of all live actors (only those built by the class ``kind`` or a subclass,
        if given), in start order."""
        procs = self._procs.values()
        if kind is None:
            return [p.ref for p in procs]
        return [p.ref for p in procs if isinstance(p.actor, kind)]

    async def stop_all(self, timeout: Shutdown) -> None:
        """Stop every live actor, newest first, each as :meth:`stop` with reason
        ``"shutdown"``."""
        for proc in reversed(list(self._procs.values())):
            await self._shutdown(proc, timeout, functools.partial(proc.stop_gracefully, SHUTDOWN))
