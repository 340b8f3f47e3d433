"""What Supervisor and DynamicSupervisor share: children, restart intensity, fallback, events."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from dspex.actors import SHUTDOWN, Actor, ActorRef, Caller, Exit, Shutdown, is_normal_exit
from dspex.errors import (
    ConfigError,
    DSPexError,
    Ignored,
    StartError,
    SupervisorError,
    format_reason,
)
from dspex.supervision._spec import (
    ChildFallback,
    ChildInfo,
    ChildRestarted,
    ChildRestartIntensityExceeded,
    ChildSpec,
    RestartIntensityExceeded,
    SupervisorEvent,
)

log = logging.getLogger("dspex.supervision")

EventHandler = Callable[[SupervisorEvent], None]


class _TryAgain(msgspec.Struct, frozen=True):
    """Retry starting the children whose restart failed (sent by a supervisor to itself)."""


class StartChild(msgspec.Struct, frozen=True):
    """Request: start a child from ``spec``."""

    spec: ChildSpec


class TerminateChild(msgspec.Struct, frozen=True):
    """Request: stop the child ``target`` (an id, or a ref for a DynamicSupervisor)."""

    target: Any


class ReplaceChild(msgspec.Struct, frozen=True):
    """Request: stop the child ``target`` and run it from ``spec`` from now on."""

    target: Any
    spec: ChildSpec


class WhichChildren(msgspec.Struct, frozen=True):
    """Request: the children, in start order."""


class CountChildren(msgspec.Struct, frozen=True):
    """Request: counts of child specs, running children, supervisors and workers."""


class _Child:
    __slots__ = ("crashes", "key", "last", "reason", "ref", "restarts", "spec", "waiting")

    def __init__(self, key: Any, spec: ChildSpec):
        self.key = key
        self.spec = spec
        self.ref: ActorRef | None = None
        # the incarnation that exited, while a restart is pending: a DynamicSupervisor's
        # children are addressed by it until one starts (as OTP keys them by the old pid)
        self.last: ActorRef | None = None
        self.waiting = False  # a restart failed; _TryAgain will start it
        self.crashes: deque[float] | None = None
        self.restarts: deque[float] | None = None  # with an intensity of its own
        self.reason: object = None  # why its last restart failed

    def info(self) -> ChildInfo:
        return ChildInfo(self.spec.id, self.ref, self.spec.restart, _is_supervisor(self.spec.start))


def _is_supervisor(start: Any) -> bool:
    return isinstance(start, type) and issubclass(start, SupervisorBase)


def _shutdown_of(spec: ChildSpec) -> Shutdown:
    if spec.shutdown is not None:
        return spec.shutdown
    return "infinity" if _is_supervisor(spec.start) else 5.0


class SupervisorBase(Actor):
    """Shared machinery of the two supervisors; not used directly."""

    trap_exit = True

    _children: dict[Any, _Child]
    _by_pid: dict[int, _Child]

    def _setup(self, max_restarts: int, max_seconds: float, on_event: EventHandler | None) -> None:
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        if not isinstance(max_seconds, (int, float)) or max_seconds <= 0:
            raise ConfigError(f"max_seconds must be > 0, got {max_seconds!r}")
        self._max_restarts = max_restarts
        self._max_seconds = float(max_seconds)
        self._restarts: deque[float] = deque()
        self._on_event = on_event
        self._children = {}
        self._by_pid = {}

    # -- events and intensity -------------------------------------------------------------------

    def _emit(self, event: SupervisorEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("on_event handler of %r raised; ignored", self.ref)

    def _add_restart(self) -> bool:
        """Count one restart; False when that exceeds the restart intensity."""
        return self._count(self._restarts, self._max_restarts, self._max_seconds)

    def _add_own_restart(self, child: _Child) -> bool:
        """Count one restart of a child with an intensity of its own; False past it."""
        if child.restarts is None:
            child.restarts = deque()
        limit = child.spec.max_restarts
        assert limit is not None
        return self._count(child.restarts, limit, child.spec.max_seconds)

    def _count(self, restarts: deque[float], limit: int, seconds: float) -> bool:
        now = self.node.loop.time()
        restarts.append(now)
        while restarts and restarts[0] < now - seconds:
            restarts.popleft()
        return len(restarts) <= limit

    def _give_up(self) -> None:
        log.error(
            "%r: more than %d restarts in %g s; shutting down",
            self.ref,
            self._max_restarts,
            self._max_seconds,
        )
        self._emit(RestartIntensityExceeded(self.ref, self._max_restarts, self._max_seconds))
        self.stop(SHUTDOWN)  # terminate() stops the children; our parent decides what next

    def _give_up_on(self, child: _Child, reason: object) -> None:
        """A child exceeded its own intensity: forget it, as its own supervisor would stop."""
        spec = child.spec
        assert spec.max_restarts is not None
        log.error(
            "%r: child %r restarted more than %d times in %g s; not restarting it (last exit: %s)",
            self.ref,
            spec.id,
            spec.max_restarts,
            spec.max_seconds,
            format_reason(reason),
        )
        self._remove(child)
        self._emit(
            ChildRestartIntensityExceeded(
                self.ref, spec.id, reason, spec.max_restarts, spec.max_seconds, spec
            )
        )

    def _note_crash(self, child: _Child, reason: object) -> None:
        fb = child.spec.fallback
        if fb is None or is_normal_exit(reason):
            return
        now = self.node.loop.time()
        crashes = child.crashes
        if crashes is None:
            crashes = child.crashes = deque()
        crashes.append(now)
        while crashes and crashes[0] < now - fb.within:
            crashes.popleft()
        if len(crashes) >= fb.after:
            child.spec = msgspec.structs.replace(fb.spec, id=child.spec.id)
            child.crashes = None
            log.warning(
                "%r: child %r crashed %d times in %g s; restarting it from its fallback spec",
                self.ref,
                child.spec.id,
                len(crashes),
                fb.within,
            )
            self._emit(ChildFallback(self.ref, child.spec.id, reason, len(crashes), child.spec))

    # -- starting and stopping children ---------------------------------------------------------

    async def _start(self, child: _Child) -> StartError | None:
        """Start ``child``; its ``ref`` stays None if its ``init`` ignored (OTP's ``:ignore``)."""
        spec = child.spec
        try:
            ref = await self.spawn_link(
                spec.start,
                *spec.args,
                name=spec.name,
                mailbox_size=spec.mailbox_size,
                overflow=spec.overflow,
                start_timeout=spec.start_timeout,
            )
        except Ignored:
            child.waiting = False
            child.reason = None
            self._forget_last(child)
            return None
        except StartError as exc:
            return exc
        except DSPexError as exc:  # e.g. NameTaken, ConfigError from the spawn options
            return StartError(spec.id, exc)
        child.ref = ref
        child.waiting = False
        child.reason = None
        self._forget_last(child)
        self._by_pid[ref.pid] = child
        return None

    def _forget_last(self, child: _Child) -> None:
        last, child.last = child.last, None
        if last is not None and self._by_pid.get(last.pid) is child:
            del self._by_pid[last.pid]

    async def _terminate(self, child: _Child) -> None:
        ref = child.ref
        if ref is None:
            self._forget_last(child)  # waiting for a restart: nothing runs, none will
            return
        child.ref = None
        self._by_pid.pop(ref.pid, None)
        self.unlink(ref)
        await self.node.shutdown_child(ref, self.ref, _shutdown_of(child.spec))

    async def _restart_one(self, child: _Child, reason: object) -> bool:
        """Start a child again; on failure leave it waiting for a retry. True on success."""
        err = await self._start(child)
        if err is not None:
            log.error("%r: restarting child %r failed: %s", self.ref, child.spec.id, err)
            child.waiting = True
            child.reason = err
            if child.last is not None:  # still addressable by the ref it had
                self._by_pid[child.last.pid] = child
            self.send_after(0, _TryAgain())  # as info: never refused by a full mailbox
            return False
        if child.ref is None:  # its init ignored: not running, as OTP leaves it
            self._ignored(child)
            return True
        self._emit(ChildRestarted(self.ref, child.spec.id, reason, child.ref))
        return True

    def _ignored(self, child: _Child) -> None:
        """A restarted child's ``init`` ignored: a Supervisor keeps it, not running."""

    def _remove(self, child: _Child) -> None:
        self._children.pop(child.key, None)
        self._forget_last(child)

    # -- callbacks ------------------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Exit):
            child = self._by_pid.pop(msg.actor.pid, None) if msg.actor is not None else None
            if child is not None and child.ref is msg.actor:
                child.ref = None
                child.last = msg.actor
                await self._child_exited(child, msg.reason)
        elif isinstance(msg, _TryAgain):
            waiting = [c for c in self._children.values() if c.waiting]
            if any(c.spec.max_restarts is None for c in waiting) and not self._add_restart():
                self._give_up()
                return
            for child in waiting:
                if child.spec.max_restarts is not None and not self._add_own_restart(child):
                    self._give_up_on(child, child.reason)
                elif not await self._restart_one(child, "start_failed"):
                    return
        else:
            await super().handle_info(msg)

    async def _child_exited(self, child: _Child, reason: object) -> None:
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and is_normal_exit(reason)):
            self._exited_for_good(child)
            return
        if child.spec.max_restarts is not None:  # its own intensity: it restarts alone
            if not self._add_own_restart(child):
                self._give_up_on(child, reason)
                return
            self._note_crash(child, reason)
            await self._restart_one(child, reason)
            return
        if not self._add_restart():
            self._give_up()
            return
        self._note_crash(child, reason)
        await self._restart(child, reason)

    def _exited_for_good(self, child: _Child) -> None:
        """A child that is not to be restarted exited."""
        self._remove(child)

    async def _restart(self, child: _Child, reason: object) -> None:
        await self._restart_one(child, reason)

    async def terminate(self, reason: object) -> None:
        for child in reversed(list(self._children.values())):
            await self._terminate(child)

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        try:
            return await self._request(msg)
        except DSPexError as exc:  # a bad request is the caller's error, not a crash
            caller.fail(exc)
            return None

    async def _request(self, msg: Any) -> Any:
        children = self._children.values()
        if isinstance(msg, WhichChildren):
            return [c.info() for c in children]
        if isinstance(msg, CountChildren):
            sups = sum(1 for c in children if _is_supervisor(c.spec.start))
            return {
                "specs": len(children),
                "active": sum(1 for c in children if c.ref is not None),
                "supervisors": sups,
                "workers": len(children) - sups,
            }
        raise SupervisorError(f"{type(self).__name__} does not handle the request {msg!r}")
