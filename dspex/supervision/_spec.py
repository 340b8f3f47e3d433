"""Child specs, the fallback rule, and the events supervisors report."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from dspex.actors import ActorRef, Overflow, Shutdown
from dspex.errors import ConfigError

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]

_RESTARTS = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How a supervisor starts, restarts and stops one child.

    ``start`` builds a fresh actor (an Actor subclass or a zero-argument factory) and ``args`` go
    to its ``init``, on the first start and on every restart. ``restart``: ``permanent`` always,
    ``transient`` only after an abnormal exit, ``temporary`` never. ``shutdown``: seconds to wait
    for a graceful stop before a hard kill, ``"brutal_kill"``, or ``"infinity"`` (``None`` picks
    5 s for workers and infinity for supervisors, as OTP does). ``fallback`` restarts the child
    from another spec after repeated crashes.

    ``max_restarts`` (None by default) gives the child a restart intensity of its own: more
    than ``max_restarts`` restarts within ``max_seconds`` and the supervisor stops restarting
    it, forgets it and reports :class:`ChildRestartIntensityExceeded`, while its other children
    live on. This is OTP's supervisor per child (the child alone under a ``one_for_one``
    supervisor of its own, itself a ``temporary`` child) without the extra process: the child
    restarts alone whatever the strategy, and its restarts do not count toward the
    supervisor's own intensity. With None they do, as for any child in OTP.
    """

    id: Any
    start: Any
    args: tuple[Any, ...] = ()
    restart: Restart = "permanent"
    shutdown: Shutdown | None = None
    name: str | None = None
    mailbox_size: int | None = None
    overflow: Overflow | None = None
    start_timeout: float | None = None
    fallback: Fallback | None = None
    max_restarts: int | None = None
    max_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not callable(self.start):
            raise ConfigError(f"child {self.id!r}: start must be an Actor class or factory")
        if self.restart not in _RESTARTS:
            raise ConfigError(
                f"child {self.id!r}: restart must be one of {_RESTARTS}, got {self.restart!r}"
            )
        sd = self.shutdown
        if not (
            sd is None
            or sd in ("brutal_kill", "infinity")
            or (isinstance(sd, (int, float)) and not isinstance(sd, bool) and sd >= 0)
        ):
            raise ConfigError(
                f"child {self.id!r}: shutdown must be seconds >= 0, 'brutal_kill' or "
                f"'infinity', got {sd!r}"
            )
        if self.fallback is not None and not isinstance(self.fallback, Fallback):
            raise ConfigError(f"child {self.id!r}: fallback must be a Fallback")
        limit = self.max_restarts
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            raise ConfigError(
                f"child {self.id!r}: max_restarts must be None or an int >= 0, got {limit!r}"
            )
        window = self.max_seconds
        if not isinstance(window, (int, float)) or isinstance(window, bool) or not window > 0:
            raise ConfigError(f"child {self.id!r}: max_seconds must be > 0, got {window!r}")


class Fallback(msgspec.Struct, frozen=True, kw_only=True):
    """Restart a child from ``spec`` instead after ``after`` abnormal exits within ``within`` s.

    For a child that keeps crashing one way but can serve another (a degraded mode); the
    supervisor reports the switch as a :class:`ChildFallback` event. The new spec keeps the
    child's id.
    """

    spec: ChildSpec
    after: int = 3
    within: float = 60.0

    def __post_init__(self) -> None:
        if self.after < 1 or self.within <= 0:
            raise ConfigError(f"Fallback needs after >= 1 and within > 0, got {self}")


class ChildInfo(msgspec.Struct, frozen=True):
    """One row of ``which_children``: ``ref`` is None while the child is not running."""

    id: Any
    ref: ActorRef | None
    restart: Restart
    supervisor: bool


class ChildRestarted(msgspec.Struct, frozen=True):
    """A child exited with ``reason`` and was started again as ``ref``."""

    supervisor: ActorRef
    child_id: Any
    reason: Any
    ref: ActorRef


class ChildFallback(msgspec.Struct, frozen=True):
    """A child crashed ``crashes`` times within its window; it restarts from ``spec`` now."""

    supervisor: ActorRef
    child_id: Any
    reason: Any
    crashes: int
    spec: ChildSpec


class ChildRestartIntensityExceeded(msgspec.Struct, frozen=True):
    """A child with an intensity of its own (``ChildSpec.max_restarts``) exceeded it: the
    supervisor no longer restarts it and has forgotten it. ``reason`` is its last exit reason
    (or the error its last restart failed with); ``spec`` is the spec it last ran from."""

    supervisor: ActorRef
    child_id: Any
    reason: Any
    max_restarts: int
    max_seconds: float
    spec: ChildSpec


class RestartIntensityExceeded(msgspec.Struct, frozen=True):
    """More than ``max_restarts`` restarts in ``max_seconds``: the supervisor shuts down."""

    supervisor: ActorRef
    max_restarts: int
    max_seconds: float


SupervisorEvent = (
    ChildRestarted | ChildFallback | ChildRestartIntensityExceeded | RestartIntensityExceeded
)
