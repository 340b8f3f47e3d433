"""Supervision trees: Supervisor, DynamicSupervisor, TaskSupervisor, child specs and the
fallback restart.

Semantics mirror OTP's ``supervisor`` and Elixir's ``DynamicSupervisor`` and
``Task.Supervisor``; the documentation's architecture page (docs/architecture.md) describes
them.
"""

from dspex.supervision._base import EventHandler
from dspex.supervision._dynamic import DynamicSupervisor, DynamicSupervisorRef
from dspex.supervision._spec import (
    ChildFallback,
    ChildInfo,
    ChildRestarted,
    ChildRestartIntensityExceeded,
    ChildSpec,
    Fallback,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    SupervisorEvent,
)
from dspex.supervision._supervisor import Supervisor, SupervisorRef
from dspex.supervision._tasks import Report, TaskSupervisor, TaskSupervisorRef

__all__ = [
    "ChildFallback",
    "ChildInfo",
    "ChildRestartIntensityExceeded",
    "ChildRestarted",
    "ChildSpec",
    "DynamicSupervisor",
    "DynamicSupervisorRef",
    "EventHandler",
    "Fallback",
    "Report",
    "Restart",
    "RestartIntensityExceeded",
    "Strategy",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorRef",
    "TaskSupervisor",
    "TaskSupervisorRef",
]
