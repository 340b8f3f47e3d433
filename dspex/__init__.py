"""dspex: run DSPy programs as supervised asyncio actors.

The public API is what ``__all__`` lists; everything else is private.
"""

from dspex._version import __version__ as __version__
from dspex.actors import (
    NOREPLY,
    Actor,
    ActorRef,
    Caller,
    Down,
    Exit,
    is_normal_exit,
)
from dspex.errors import (
    ActorError,
    ActorExited,
    ChildNotFound,
    ConfigError,
    DSPexError,
    InputError,
    LMConnectionError,
    LMError,
    LMTimeout,
    MailboxFull,
    MaxChildren,
    NameTaken,
    NoProc,
    Overloaded,
    ParseError,
    SignatureError,
    StartError,
    SupervisorError,
    Timeout,
)
from dspex.runtime import Runtime
from dspex.supervision import (
    ChildSpec,
    DynamicSupervisor,
    DynamicSupervisorRef,
    Fallback,
    Supervisor,
    SupervisorRef,
)

__all__ = [
    "NOREPLY",
    "Actor",
    "ActorError",
    "ActorExited",
    "ActorRef",
    "Caller",
    "ChildNotFound",
    "ChildSpec",
    "ConfigError",
    "DSPexError",
    "Down",
    "DynamicSupervisor",
    "DynamicSupervisorRef",
    "Exit",
    "Fallback",
    "InputError",
    "LMConnectionError",
    "LMError",
    "LMTimeout",
    "MailboxFull",
    "MaxChildren",
    "NameTaken",
    "NoProc",
    "Overloaded",
    "ParseError",
    "Runtime",
    "SignatureError",
    "StartError",
    "Supervisor",
    "SupervisorError",
    "SupervisorRef",
    "Timeout",
    "is_normal_exit",
]
