"""What travels through a mailbox and why an actor ends: the kinds of mailbox items, the reply
handle of one call (:class:`Caller`), the overflow policy and the exit reasons.

The bottom of the actor layer: it imports nothing from :mod:`dspex.actors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

#: How a sender is treated when the target's bounded mailbox is full.
Overflow = Literal["raise", "wait"]

NORMAL = "normal"
SHUTDOWN = "shutdown"
KILL = "kill"
KILLED = "killed"
NOPROC = "noproc"

#: Default timeout of :meth:`ActorRef.call`, in seconds (as GenServer.call's 5 s).
DEFAULT_CALL_TIMEOUT = 5.0

#: Returned from ``handle_call`` to reply later through the :class:`Caller`.
NOREPLY: Any = object()

# A mailbox item is (kind, message, the reply future of a call or None).
CALL = 0
CAST = 1
INFO = 2
STOP = 3
Item = tuple[int, Any, "asyncio.Future[Any] | None"]


def is_normal_exit(reason: object) -> bool:
    """True for the reasons OTP treats as normal: ``normal``, ``shutdown``, ``("shutdown", x)``."""
    if reason in (NORMAL, SHUTDOWN):
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == SHUTDOWN


class Caller:
    """The reply handle of one call, given to ``handle_call``.

    Return a value from ``handle_call`` to reply at once, or keep the Caller, return
    :data:`NOREPLY` and answer later with :meth:`reply` or :meth:`fail` (OTP's deferred reply).
    Answers after the caller gave up (timeout, cancellation, exit) are dropped.
    """

    __slots__ = ("_abandon", "_answered", "_fut")

    def __init__(
        self, fut: asyncio.Future[Any], abandon: dict[asyncio.Future[Any], Callable[[], object]]
    ):
        self._fut = fut
        self._abandon = abandon  # the process's: the caller's side runs what it holds for fut
        self._answered = False

    @property
    def waiting(self) -> bool:
        """Whether the caller still waits for an answer."""
        return not self._fut.done()

    def reply(self, value: Any) -> None:
        """Answer the call with ``value``."""
        self._answer()
        if not self._fut.done():
            self._fut.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Answer the call by raising ``error`` in the caller; the actor itself is unaffected."""
        self._answer()
        if not self._fut.done():
            self._fut.set_exception(error)

    def _answer(self) -> None:
        self._answered = True
        if self._abandon:
            self._abandon.pop(self._fut, None)

    def on_abandon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` if the caller stops waiting before it is answered: its timeout
        fired, it was cancelled, or the actor exited (at once if that already happened). Use
        it to cancel the caller's work. The caller's own side runs it, as it stops waiting:
        an answered call costs nothing more."""
        if self._answered:
            return
        if self._fut.done():
            callback()
        else:
            self._abandon[self._fut] = callback
