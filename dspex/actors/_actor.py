"""The Actor base class: a GenServer-shaped object whose callbacks run in its own task.

The top of the actor layer: it is built on the node and the process (as gen_server is built on
Erlang's processes), and neither of them imports it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

from dspex.actors._messages import NOPROC, Caller, Overflow
from dspex.actors._node import Node
from dspex.actors._process import _UNSET, ActorRef, Down, _Process
from dspex.errors import ActorError, ConfigError

log = logging.getLogger("dspex.actors")

A = TypeVar("A", bound="Actor")
T = TypeVar("T")

_monitor_ids = itertools.count(1)


class Actor:
    """Subclass and override the async callbacks; spawn with :meth:`dspex.actors.Node.spawn`.

    Callbacks run one at a time in the actor's own task, in mailbox order:

    - ``init(*args)``: set up state; an exception here fails the spawn with ``StartError``;
    - ``handle_call(msg, caller)``: return the reply, or :data:`NOREPLY` and answer later through
      ``caller`` (to run slow work concurrently, e.g. in :meth:`start_task`);
    - ``handle_cast(msg)`` and ``handle_info(msg)`` (timers, :class:`Down`, trapped :class:`Exit`,
      :class:`IdleTimeout`);
    - ``handle_continue(arg)``: work a callback (or ``init``) asked for with
      :meth:`continue_with`, run before the next message;
    - ``terminate(reason)``: clean up when the actor stops itself, is stopped gracefully or
      crashes.

    In ``init``, :meth:`ignore` (OTP's ``:ignore``) or :meth:`stop` (``{:stop, reason}``) end
    the actor without ``terminate``: the spawn raises ``Ignored`` or ``StartError``.

    An exception escaping a callback crashes the actor ("let it crash"): callers waiting on it get
    ``ActorExited`` at once, links and monitors are told, and its supervisor restarts it.

    Class attributes set the defaults of the spawn options: ``mailbox_size`` (bounded),
    ``overflow`` (``"raise"``: senders get ``MailboxFull``; ``"wait"``: callers wait for room) and
    ``trap_exit`` (receive exit signals of linked actors as :class:`Exit` messages).
    """

    mailbox_size: ClassVar[int] = 1024
    overflow: ClassVar[Overflow] = "raise"
    trap_exit: ClassVar[bool] = False
    ref_type: ClassVar[type[ActorRef]] = ActorRef

    _proc: _Process  # both filled in by Node.spawn
    _node: Node

    # -- callbacks ------------------------------------------------------------------------------

    async def init(self, *args: Any) -> None:
        """Set up the actor's state from the spawn arguments."""

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        """Answer a call. The default crashes the actor, as an unexpected call is a bug."""
        raise ActorError(f"{type(self).__name__} received a call it does not handle: {msg!r}")

    async def handle_cast(self, msg: Any) -> None:
        """Handle a cast. The default crashes the actor, as an unexpected cast is a bug."""
        raise ActorError(f"{type(self).__name__} received a cast it does not handle: {msg!r}")

    async def handle_info(self, msg: Any) -> None:
        """Handle any other message. The default logs and drops it (as a GenServer does)."""
        if not isinstance(msg, Down):
            log.warning("%r dropped an unexpected message: %r", self.ref, msg)

    async def handle_continue(self, arg: Any) -> None:
        """Run the work asked for with :meth:`continue_with`. The default crashes the actor, as
        asking for a continuation nothing handles is a bug."""
        raise ActorError(
            f"{type(self).__name__} asked to continue with {arg!r} but does not "
            "implement handle_continue"
        )

    async def terminate(self, reason: object) -> None:
        """Clean up before the actor exits with ``reason``."""

    # -- the actor's own process ----------------------------------------------------------------

    @property
    def ref(self) -> ActorRef:
        """This actor's address."""
        return self._proc.ref

    @property
    def node(self) -> Node:
        """The node this actor runs on (``runtime.node`` in a :class:`dspex.Runtime`)."""
        return self._node

    def stop(self, reason: object = "normal") -> None:
        """Exit with ``reason`` once the current callback returns; ``terminate`` runs first.
        A reply the callback returns is sent after ``terminate`` (OTP's
        ``{:stop, reason, reply, state}``). From ``init``: the actor does not start, no
        ``terminate`` runs, and the spawn raises ``StartError`` with ``reason``."""
        self._proc.request_stop(reason)

    def ignore(self) -> None:
        """From ``init``: do not start (OTP's ``:ignore``). The actor exits normally, no
        ``terminate`` runs; the spawn raises ``Ignored``, and a supervisor keeps the child's
        spec with no actor running. ActorError anywhere else."""
        proc = self._proc
        if proc.task is not None and proc.task is asyncio.current_task() and not proc.started:
            proc.ignored = True
            return
        raise ActorError("Actor.ignore() is for init only; use Actor.stop() to exit later")

    def continue_with(self, arg: Any) -> None:
        """Run ``handle_continue(arg)`` once the current callback (or ``init``) returns, before
        the next message is handled (OTP's ``{:continue, arg}``): e.g. slow setup after the
        spawn has returned. One per callback: ActorError for a second."""
        proc = self._proc
        if proc.continuation is not _UNSET:
            raise ActorError(f"{self.ref!r} already continues with {proc.continuation!r}")
        proc.continuation = arg

    def timeout_after(self, seconds: float) -> None:
        """If no message arrives within ``seconds`` after the current callback, deliver
        :class:`IdleTimeout` to ``handle_info`` (OTP's ``{:noreply, state, timeout}``). It is
        for the next wait only: any message cancels it, and a message already queued means it
        never fires; ask again from each callback to keep an idle timeout."""
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ConfigError(f"timeout_after takes seconds >= 0, got {seconds!r}")
        self._proc.idle = float(seconds)

    def set_trap_exit(self, flag: bool) -> None:
        """Turn trapping of exit signals on or off for this incarnation."""
        self._proc.trap_exit = flag

    async def spawn_link(self, factory: type[A], *args: Any, **options: Any) -> ActorRef:
        """Spawn an actor linked to this one (see :meth:`dspex.actors.Node.spawn`)."""
        return await self._node.spawn(factory, *args, _parent=self._proc, **options)

    def link(self, ref: ActorRef) -> None:
        """Link to ``ref``: when either exits abnormally the other gets the exit signal.

        Linking to an actor that is already dead sends this actor an exit signal ``noproc``.
        """
        me, other = self._proc, ref._proc
        if other is me:
            return
        if not other.alive:
            me.exit_signal(ref, NOPROC)
            return
        me.links.add(other)
        other.links.add(me)

    def unlink(self, ref: ActorRef) -> None:
        """Remove the link to ``ref``, if any."""
        me, other = self._proc, ref._proc
        me.links.discard(other)
        other.links.discard(me)

    def monitor(self, ref: ActorRef) -> int:
        """Watch ``ref``: a :class:`Down` message arrives when it exits (at once, ``noproc``,
        if it is already dead). Returns the monitor id, for :meth:`demonitor`."""
        me, target = self._proc, ref._proc
        mref = next(_monitor_ids)
        if not target.alive:
            me.info(Down(mref, ref, NOPROC))
            return mref
        if target.monitors is None:
            target.monitors = {}
        target.monitors[mref] = me
        if me.watching is None:
            me.watching = {}
        me.watching[mref] = target
        return mref

    def demonitor(self, mref: int, *, flush: bool = False) -> None:
        """Stop a monitor; with ``flush``, also drop its Down message if already queued."""
        me = self._proc
        target = me.watching.pop(mref, None) if me.watching else None
        if target is not None and target.monitors is not None:
            target.monitors.pop(mref, None)
        if flush:
            kept = [
                it for it in me.mailbox if not (isinstance(it[1], Down) and it[1].monitor == mref)
            ]
            me.mailbox.clear()
            me.mailbox.extend(kept)

    def send_after(self, delay: float, msg: Any) -> asyncio.TimerHandle:
        """Deliver ``msg`` to this actor's ``handle_info`` after ``delay`` seconds.

        Returns a handle whose ``cancel()`` stops the timer; timers die with the actor.
        """
        return self._proc.add_timer(delay, msg)

    async def wait_tasks(self) -> None:
        """Wait until every task this actor owns has finished (e.g. to drain in ``terminate``;
        the supervisor's shutdown timeout bounds the wait)."""
        tasks = self._proc.tasks
        if tasks:
            await asyncio.wait(set(tasks))

    def cancel_tasks(self) -> None:
        """Cancel every task this actor owns."""
        self._proc.cancel_tasks()

    def start_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in a task this actor owns, concurrently with its mailbox.

        The task is cancelled when the actor exits; an exception escaping it kills the actor at
        once with that exception as the reason, like the crash of a linked process.
        """
        return self._proc.start_task(coro)
