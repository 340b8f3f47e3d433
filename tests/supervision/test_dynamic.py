"""DynamicSupervisor, and the fallback restart (a different spec after repeated crashes)."""

from __future__ import annotations

from typing import Any

import pytest

from dspex.actors import Actor, Caller, Node
from dspex.errors import ActorExited, ChildNotFound, ConfigError, MaxChildren, StartError
from dspex.supervision import (
    ChildFallback,
    ChildRestarted,
    ChildRestartIntensityExceeded,
    ChildSpec,
    DynamicSupervisor,
    DynamicSupervisorRef,
    Fallback,
    RestartIntensityExceeded,
    Supervisor,
)
from tests.actors.helpers import FailingInit
from tests.supervision.helpers import Events, worker


async def test_start_and_terminate_children_at_run_time(node: Node) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start(node)
    a = await sup.start_child(worker("a", journal))
    b = await sup.start_child(worker("b", journal))
    assert [c.ref for c in await sup.which_children()] == [a, b]
    await sup.terminate_child(a)
    assert not a.alive
    assert journal[-1] == ("stop", "a", "shutdown")
    assert await sup.count_children() == {"specs": 1, "active": 1, "supervisors": 0, "workers": 1}
    with pytest.raises(ChildNotFound):
        await sup.terminate_child(a)


async def test_max_children_is_enforced(node: Node) -> None:
    sup = await DynamicSupervisor.start(node, max_children=2)
    await sup.start_child(worker("a", []))
    await sup.start_child(worker("b", []))
    with pytest.raises(MaxChildren, match="max_children=2"):
        await sup.start_child(worker("c", []))
    assert sup.alive


async def test_a_failing_child_start_is_the_callers_error(node: Node) -> None:
    sup = await DynamicSupervisor.start(node)
    with pytest.raises(StartError, match="init refused"):
        await sup.start_child(ChildSpec(id="bad", start=FailingInit))
    assert await sup.which_children() == []
    assert sup.alive


async def test_crashed_children_are_restarted_one_for_one(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    sup = await DynamicSupervisor.start(node, on_event=events)
    a = await sup.start_child(worker("a", journal))
    b = await sup.start_child(worker("b", journal))
    with pytest.raises(ActorExited):
        await a.call("crash")
    event = await events.next()
    assert isinstance(event, ChildRestarted)
    assert event.child_id == "a"
    assert event.ref is node.whereis("a")
    assert event.ref is not a
    assert await event.ref.call("count") == 1
    assert b.alive
    assert await b.call("count") == 1


async def test_dynamic_supervisor_restart_intensity(node: Node) -> None:
    events = Events()
    sup = await DynamicSupervisor.start(node, max_restarts=1, on_event=events)
    await sup.start_child(worker("a", []))
    for expected in (ChildRestarted, RestartIntensityExceeded):
        ref = node.whereis("a")
        assert ref is not None
        with pytest.raises(ActorExited):
            await ref.call("crash")
        assert isinstance(await events.next(), expected)
    assert await sup.wait() == "shutdown"


class Native(Actor):
    """Crashes on request: stands in for a native module implementation with a bug."""

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "crash":
            raise RuntimeError("native bug")
        return "native"


class Reference(Actor):
    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        return "reference"


def _with_fallback(after: int) -> ChildSpec:
    reference = ChildSpec(id="unused", start=Reference, name="mod")
    return ChildSpec(
        id="mod", start=Native, name="mod", fallback=Fallback(spec=reference, after=after)
    )


async def test_repeated_crashes_restart_the_child_from_its_fallback_spec(
    node: Node,
) -> None:
    events = Events()
    sup = await DynamicSupervisor.start(node, max_restarts=10, on_event=events)
    await sup.start_child(_with_fallback(after=3))
    for _ in range(2):
        with pytest.raises(ActorExited):
            await node.call("mod", "crash")
        assert isinstance(await events.next(), ChildRestarted)
        assert await node.call("mod", "ping") == "native"
    with pytest.raises(ActorExited):
        await node.call("mod", "crash")
    fallback = await events.next()
    assert isinstance(fallback, ChildFallback)
    assert fallback.crashes == 3
    assert fallback.spec.start is Reference
    assert fallback.child_id == "mod"  # the new spec keeps the child's id
    assert isinstance(await events.next(), ChildRestarted)
    assert await node.call("mod", "ping") == "reference"
    # it stays on the fallback spec from now on
    node.exit(node.resolve("mod"), "boom")
    assert isinstance(await events.next(), ChildRestarted)
    assert await node.call("mod", "ping") == "reference"


async def test_fallback_also_works_under_a_static_supervisor(node: Node) -> None:
    events = Events()
    await Supervisor.start(node, [_with_fallback(after=1)], on_event=events)
    with pytest.raises(ActorExited):
        await node.call("mod", "crash")
    assert isinstance(await events.next(), ChildFallback)
    assert isinstance(await events.next(), ChildRestarted)
    assert await node.call("mod", "ping") == "reference"


async def test_normal_exits_do_not_count_towards_fallback(node: Node) -> None:
    events = Events()
    await Supervisor.start(node, [_with_fallback(after=1)], on_event=events)
    await node.stop(node.resolve("mod"), reason="shutdown")
    event = await events.next()
    assert isinstance(event, ChildRestarted)  # permanent: restarted, still native
    assert await node.call("mod", "ping") == "native"


async def test_replace_child_switches_a_dynamic_child_by_hand(node: Node) -> None:
    sup = await DynamicSupervisor.start(node)
    old = await sup.start_child(ChildSpec(id="m", start=Native, name="m"))
    new = await sup.replace_child(old, ChildSpec(id="m", start=Reference, name="m"))
    assert not old.alive
    assert await new.call("ping") == "reference"
    assert [c.ref for c in await sup.which_children()] == [new]


async def test_dynamic_supervisor_nested_under_a_supervisor(node: Node) -> None:
    sup = await Supervisor.start(
        node, [DynamicSupervisor.child_spec("my-modules", name="my-modules")]
    )
    dyn = node.resolve("my-modules")
    assert (await sup.which_children())[-1].supervisor
    assert isinstance(dyn, DynamicSupervisorRef)  # the ref of a supervisor carries its API
    child = await dyn.start_child(worker("w", []))
    assert await child.call("count") == 1


async def _crash(node: Node, name: str) -> None:
    ref = node.whereis(name)
    assert ref is not None
    with pytest.raises(ActorExited):
        await ref.call("crash")


async def test_a_child_with_its_own_intensity_stops_alone(node: Node) -> None:
    events = Events()
    sup = await DynamicSupervisor.start(node, max_restarts=1, on_event=events)
    await sup.start_child(worker("a", [], max_restarts=3, max_seconds=60))
    b = await sup.start_child(worker("b", []))
    for _ in range(3):  # more restarts than the supervisor's own intensity allows
        await _crash(node, "a")
        assert isinstance(await events.next(), ChildRestarted)
    await _crash(node, "a")
    event = await events.next()
    assert isinstance(event, ChildRestartIntensityExceeded)
    assert (event.child_id, event.max_restarts, event.max_seconds) == ("a", 3, 60)
    assert event.reason.args == ("a crashed",)  # its last crash
    assert event.spec.name == "a"
    assert node.whereis("a") is None  # not restarted, and forgotten
    assert [c.id for c in await sup.which_children()] == ["b"]
    assert sup.alive  # its own intensity untouched
    assert await b.call("count") == 1
    await sup.start_child(worker("a", []))  # the id may be used again


async def test_a_child_whose_restarts_keep_failing_gives_up_with_the_start_error(
    node: Node,
) -> None:
    starts: list[int] = []

    class BrokenAfterFirstStart(Actor):
        async def init(self, *args: Any) -> None:
            starts.append(1)
            if len(starts) > 1:
                raise ValueError("its resource is gone")

    events = Events()
    sup = await DynamicSupervisor.start(node, max_restarts=1, on_event=events)
    ref = await sup.start_child(
        ChildSpec(id="m", start=BrokenAfterFirstStart, name="m", max_restarts=5, max_seconds=60)
    )
    node.exit(ref, "kill")
    event = await events.next()
    assert isinstance(event, ChildRestartIntensityExceeded)
    assert len(starts) == 1 + 5  # the first start, then every restart its intensity allowed
    assert isinstance(event.reason, StartError)
    assert "its resource is gone" in str(event.reason)
    assert sup.alive
    assert await sup.which_children() == []


async def test_a_child_without_its_own_intensity_counts_toward_the_supervisors(
    node: Node,
) -> None:
    events = Events()
    sup = await DynamicSupervisor.start(node, max_restarts=1, on_event=events)
    await sup.start_child(worker("a", []))
    await sup.start_child(worker("b", [], max_restarts=10))
    for expected in (ChildRestarted, RestartIntensityExceeded):
        await _crash(node, "a")
        assert isinstance(await events.next(), expected)
    assert await sup.wait() == "shutdown"  # b went down with it


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_restarts": -1}, "max_restarts must be None or an int >= 0, got -1"),
        ({"max_restarts": "3"}, "max_restarts must be None or an int >= 0, got '3'"),
        ({"max_restarts": True}, "max_restarts must be None or an int >= 0, got True"),
        ({"max_seconds": 0}, "max_seconds must be > 0, got 0"),
        ({"max_seconds": "5"}, "max_seconds must be > 0, got '5'"),
    ],
)
def test_a_bad_child_intensity_is_a_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"child 'x': {message}$"):
        ChildSpec(id="x", start=Native, **options)
