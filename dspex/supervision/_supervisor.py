"""Supervisor: a static, ordered set of children with one_for_one/one_for_all/rest_for_one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import msgspec

from dspex.actors import SHUTDOWN, ActorRef, Node
from dspex.errors import ChildNotFound, ConfigError, SupervisorError
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
from dspex.supervision._spec import STRATEGIES, ChildInfo, ChildSpec, Restart, Strategy


class _RestartChild(msgspec.Struct, frozen=True):
    id: Any


class _DeleteChild(msgspec.Struct, frozen=True):
    id: Any


class SupervisorRef(ActorRef):
    """The ref of a :class:`Supervisor`, with its API as methods."""

    __slots__ = ()

    async def which_children(self) -> list[ChildInfo]:
        """The children in start order (``ref`` None for those not running)."""
        return cast(list[ChildInfo], await self.call(WhichChildren()))

    async def count_children(self) -> dict[str, int]:
        """Counts: ``specs``, ``active``, ``supervisors``, ``workers``."""
        return cast(dict[str, int], await self.call(CountChildren()))

    async def start_child(self, spec: ChildSpec) -> ActorRef | None:
        """Add a child at the end and start it; ``SupervisorError`` if the id is taken. None if
        its ``init`` ignored (OTP's ``:ignore``): the spec is kept, with no actor running."""
        return cast("ActorRef | None", await self.call(StartChild(spec), timeout=None))

    async def terminate_child(self, child_id: Any) -> None:
        """Stop a child and keep its spec (a temporary child's spec is deleted)."""
        await self.call(TerminateChild(child_id), timeout=None)

    async def restart_child(self, child_id: Any) -> ActorRef | None:
        """Start a terminated child again from its spec (None if its ``init`` ignored)."""
        return cast("ActorRef | None", await self.call(_RestartChild(child_id), timeout=None))

    async def delete_child(self, child_id: Any) -> None:
        """Delete the spec of a terminated child."""
        await self.call(_DeleteChild(child_id), timeout=None)

    async def replace_child(self, child_id: Any, spec: ChildSpec) -> ActorRef | None:
        """Stop the child (if running) and start it from ``spec`` from now on, keeping its id
        and position. The manual form of the fallback restart."""
        return cast("ActorRef | None", await self.call(ReplaceChild(child_id, spec), timeout=None))


class Supervisor(SupervisorBase):
    """Supervises an ordered list of children, as OTP's ``supervisor``.

    Children start in order (a failure stops those already started and fails the supervisor's own
    start) and stop in reverse order. When a child exits and is to be restarted: ``one_for_one``
    restarts it alone, ``one_for_all`` stops the others and restarts all, ``rest_for_one`` stops and
    restarts it and the children started after it. More than ``max_restarts`` restarts within
    ``max_seconds`` and the supervisor stops its children and exits with ``"shutdown"``.
    """

    ref_type = SupervisorRef

    async def init(
        self,
        children: Sequence[ChildSpec],
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        on_event: EventHandler | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self._setup(max_restarts, max_seconds, on_event)
        self._strategy = strategy
        for spec in children:
            if spec.id in self._children:
                raise ConfigError(f"two children have the id {spec.id!r}")
            self._children[spec.id] = _Child(spec.id, spec)
        for child in self._children.values():
            err = await self._start(child)
            if err is not None:
                await self.terminate(SHUTDOWN)
                raise err

    @classmethod
    async def start(
        cls,
        node: Node,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        on_event: EventHandler | None = None,
        name: str | None = None,
    ) -> SupervisorRef:
        """Start a supervisor that is not itself supervised (e.g. the root of a tree)."""
        ref = await node.spawn(
            cls, children, strategy, max_restarts, max_seconds, on_event, name=name
        )
        return cast(SupervisorRef, ref)

    @classmethod
    def child_spec(
        cls,
        id: Any,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = "one_for_one",
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
            args=(tuple(children), strategy, max_restarts, max_seconds, on_event),
            restart=restart,
            name=name,
        )

    async def _restart(self, child: _Child, reason: object) -> None:
        if self._strategy == "one_for_one":
            await self._restart_one(child, reason)
            return
        order = list(self._children.values())
        group = order if self._strategy == "one_for_all" else order[order.index(child) :]
        running = [c for c in group if c.ref is not None]
        for other in reversed(running):
            await self._terminate(other)
            if other.spec.restart == "temporary":
                self._remove(other)
        again = [c for c in group if c is child or (c in running and c.key in self._children)]
        for i, member in enumerate(again):
            if not await self._restart_one(member, reason):
                for rest in again[i + 1 :]:
                    rest.waiting = True  # started by the retry, after `member`
                return

    def _exited_for_good(self, child: _Child) -> None:
        if child.spec.restart == "temporary":
            self._remove(child)  # a transient child keeps its spec, as in OTP

    def _child(self, child_id: Any) -> _Child:
        child = self._children.get(child_id)
        if child is None:
            raise ChildNotFound(f"{self.ref!r} has no child with id {child_id!r}")
        return child

    async def _start_or_raise(self, child: _Child) -> ActorRef | None:
        err = await self._start(child)
        if err is not None:
            raise err
        return child.ref

    async def _request(self, msg: Any) -> Any:
        if isinstance(msg, StartChild):
            if msg.spec.id in self._children:
                raise SupervisorError(f"{self.ref!r} already has a child with id {msg.spec.id!r}")
            child = _Child(msg.spec.id, msg.spec)
            ref = await self._start_or_raise(child)
            self._children[child.key] = child
            return ref
        if isinstance(msg, TerminateChild):
            child = self._child(msg.target)
            await self._terminate(child)
            child.waiting = False
            self._exited_for_good(child)
            return None
        if isinstance(msg, _RestartChild):
            child = self._child(msg.id)
            if child.ref is not None:
                raise SupervisorError(f"child {msg.id!r} is running")
            return await self._start_or_raise(child)
        if isinstance(msg, _DeleteChild):
            child = self._child(msg.id)
            if child.ref is not None:
                raise SupervisorError(f"child {msg.id!r} is running; terminate it first")
            self._remove(child)
            return None
        if isinstance(msg, ReplaceChild):
            child = self._child(msg.target)
            await self._terminate(child)
            child.spec = msgspec.structs.replace(msg.spec, id=child.spec.id)
            child.crashes = None
            return await self._start_or_raise(child)
        return await super()._request(msg)
