"""Messages the runtime itself delivers to actors as info, and exit-reason helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from dspex.actors._ref import ActorRef

#: How a sender is treated when the target's bounded mailbox is full.
Overflow = Literal["raise", "wait"]

NORMAL = "normal"
SHUTDOWN = "shutdown"
KILL = "kill"
KILLED = "killed"
NOPROC = "noproc"


class Exit(msgspec.Struct, frozen=True):
    """An exit signal turned into a message: delivered as info to actors that trap exits.

    ``actor`` is the linked actor that exited (or the sender of an explicit exit signal; ``None``
    when it came from outside any actor) and ``reason`` its exit reason.
    """

    actor: ActorRef | None
    reason: Any


class Down(msgspec.Struct, frozen=True):
    """A monitored actor exited; delivered as info to the monitoring actor.

    ``reason`` is ``"noproc"`` when the target was already dead when the monitor was set up.
    """

    monitor: int
    actor: ActorRef
    reason: Any


def is_normal_exit(reason: object) -> bool:
    """True for the reasons OTP treats as normal: ``normal``, ``shutdown``, ``("shutdown", x)``."""
    if reason in (NORMAL, SHUTDOWN):
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == SHUTDOWN
