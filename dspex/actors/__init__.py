"""The process model: actors with bounded mailboxes, call/cast/info, links, monitors and names.

Semantics mirror Erlang/OTP's GenServer and processes; the documentation's architecture page
(docs/architecture.md) describes them.
"""

from dspex.actors._actor import Actor
from dspex.actors._messages import (
    DEFAULT_CALL_TIMEOUT,
    NOREPLY,
    SHUTDOWN,
    Caller,
    Overflow,
    is_normal_exit,
)
from dspex.actors._node import Node, Shutdown
from dspex.actors._process import ActorRef, Down, Exit, IdleTimeout, TaskRef, current_actor

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "NOREPLY",
    "SHUTDOWN",
    "Actor",
    "ActorRef",
    "Caller",
    "Down",
    "Exit",
    "IdleTimeout",
    "Node",
    "Overflow",
    "Shutdown",
    "TaskRef",
    "current_actor",
    "is_normal_exit",
]
