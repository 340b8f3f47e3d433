"""DynamicSupervisor: children started and stopped at run time, one_for_one."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

from dspex.actors import ActorRef, Node
from dspex.errors import ChildNotFound, ConfigError, MaxChildren
from dspex.supervision._base import (
    CountChildren,
    EventHandler,
    ReplaceChild,
    StartChild,
    SupervisorBase,
    TerminateChild,
    WhichChildren,
    _Child,
)
from dspex.supervision._spec import ChildInfo, ChildSpec, Restart


class DynamicSupervisorRef(ActorRef):
    """The ref of a :class:`DynamicSupervisor`, with its API as methods."""

    __slots__ = ()

    async def start_child(self, spec: ChildSpec) -> ActorRef | None:
        """Start a child from ``spec``; ``MaxChildren`` when the supervisor is full. None if
        its ``init`` ignored (OTP's ``:ignore``): no child was added."""
        return cast("ActorRef | None", await self.call(StartChild(spec), timeout=None))

    async def terminate_child(self, ref: ActorRef) -> None:
        """Stop the child ``ref`` and forget it; ``ChildNotFound`` if it is not a child."""
        await self.call(TerminateChild(ref), timeout=None)

    async def replace_child(self, ref: ActorRef, spec: ChildSpec) -> ActorRef | None:
        """Stop the child ``ref`` and run it from ``spec`` from now on (the fallback restart,
        by hand). Returns the new incarnation's ref."""
        return cast("ActorRef | None", await self.call(ReplaceChild(ref, spec), timeout=None))

    async def which_children(self) -> list[ChildInfo]:
        """The children (``ref`` None for one waiting for a restart)."""
        return cast(list[ChildInfo], await self.call(WhichChildren()))

    async def count_children(self) -> dict[str, int]:
        """Counts: ``specs``, ``active``, ``supervisors``, ``workers``."""
        return cast(dict[str, int], await self.call(CountChildren()))


class DynamicSupervisor(SupervisorBase):
    """Supervises children started at run time, each restarted on its own (one_for_one).

    ``max_children`` bounds how many it holds; restart intensity and fallback work as in
    :class:`~dspex.supervision.Supervisor`.
    """

    ref_type = DynamicSupervisorRef
    mailbox_size = 65536

    async def init(
        self,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        on_event: EventHandler | None = None,
    ) -> None:
        if max_children is not None and (not isinstance(max_children, int) or max_children < 0):
            raise ConfigError(f"max_children must be None or an int >= 0, got {max_children!r}")
        self._setup(max_restarts, max_seconds, on_event)
        self._max_children = max_children
        self._keys = itertools.count()

    @classmethod
    async def start(
        cls,
        node: Node,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        on_event: EventHandler | None = None,
        name: str | None = None,
    ) -> DynamicSupervisorRef:
        """Start a dynamic supervisor that is not itself supervised."""
        ref = await node.spawn(cls, max_children, max_restarts, max_seconds, on_event, name=name)
        return cast(DynamicSupervisorRef, ref)

    @classmethod
    def child_spec(
        cls,
        id: Any,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        on_event: EventHandler | None = None,
        name: str | None = None,
        restart: Restart = "permanent",
    ) -> ChildSpec:
        """A ChildSpec that runs this supervisor under another one."""
        return ChildSpec(
            id=id,
            start=cls,
            args=(max_children, max_restarts, max_seconds, on_event),
            restart=restart,
            name=name,
        )

    async def terminate(self, reason: object) -> None:
        """Stop all children at once (they have no order), each within its shutdown timeout."""
        await asyncio.gather(*(self._terminate(c) for c in list(self._children.values())))

    def _ignored(self, child: _Child) -> None:
        self._remove(child)  # OTP: a restart that returns :ignore deletes the child

    def _child_of(self, ref: ActorRef) -> _Child:
        child = self._by_pid.get(ref.pid)
        if child is None:
            raise ChildNotFound(f"{ref!r} is not a child of {self.ref!r}")
        return child

    async def _request(self, msg: Any) -> Any:
        if isinstance(msg, StartChild):
            if self._max_children is not None and len(self._children) >= self._max_children:
                raise MaxChildren(f"{self.ref!r} already has max_children={self._max_children}")
            child = _Child(next(self._keys), msg.spec)
            err = await self._start(child)
            if err is not None:
                raise err
            if child.ref is not None:
                self._children[child.key] = child
            return child.ref
        if isinstance(msg, TerminateChild):
            child = self._child_of(msg.target)
            await self._terminate(child)
            self._remove(child)
            return None
        if isinstance(msg, ReplaceChild):
            child = self._child_of(msg.target)
            await self._terminate(child)
            child.spec = msg.spec
            child.crashes = None
            err = await self._start(child)
            if err is not None or child.ref is None:
                self._remove(child)
            if err is not None:
                raise err
            return child.ref
        return await super()._request(msg)
