"""ActorRef (the address of an actor) and Caller (the reply handle of one call)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dspex.errors import MailboxFull, NoProc, Timeout

if TYPE_CHECKING:
    from dspex.actors._process import _Process

#: Default timeout of :meth:`ActorRef.call`, in seconds (as GenServer.call's 5 s).
DEFAULT_CALL_TIMEOUT = 5.0

CALL = 0
CAST = 1
INFO = 2
STOP = 3


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
        (with ``"wait"`` the call waits for room, within the same timeout).
        """
        p = self._proc
        if not p.alive:
            raise NoProc(f"{self!r} is not alive (exit reason {p.reason!r})")
        loop = p.loop
        fut: asyncio.Future[Any] = loop.create_future()
        item = (CALL, msg, fut)
        if len(p.mailbox) < p.capacity:
            p.put(item)
        elif p.overflow == "wait":
            p.blocked.append(item)
        else:
            raise MailboxFull(f"mailbox of {self!r} is full ({p.capacity} messages)")
        pending = p.pending
        pending.add(fut)
        timer = (
            loop.call_later(timeout, _expire, fut, self, timeout) if timeout is not None else None
        )
        try:
            return await fut
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


class Caller:
    """The reply handle of one call, given to ``handle_call``.

    Return a value from ``handle_call`` to reply at once, or keep the Caller, return
    :data:`NOREPLY` and answer later with :meth:`reply` or :meth:`fail` (OTP's deferred reply).
    Answers after the caller gave up (timeout, cancellation, exit) are dropped.
    """

    __slots__ = ("_answered", "_fut", "_on_abandon")

    def __init__(self, fut: asyncio.Future[Any]):
        self._fut = fut
        self._answered = False
        self._on_abandon: Callable[[], object] | None = None

    @property
    def waiting(self) -> bool:
        """Whether the caller still waits for an answer."""
        return not self._fut.done()

    def reply(self, value: Any) -> None:
        """Answer the call with ``value``."""
        self._answered = True
        if not self._fut.done():
            self._fut.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Answer the call by raising ``error`` in the caller; the actor itself is unaffected."""
        self._answered = True
        if not self._fut.done():
            self._fut.set_exception(error)

    def on_abandon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` if the caller stops waiting before it is answered: its timeout
        fired, it was cancelled, or the actor exited. Use it to cancel the caller's work."""

        self._on_abandon = callback
        self._fut.add_done_callback(self._done)

    def _done(self, _: asyncio.Future[Any]) -> None:
        if not self._answered and self._on_abandon is not None:
            self._on_abandon()
