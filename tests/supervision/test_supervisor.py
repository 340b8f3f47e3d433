"""Supervisor: strategies, restart types, intensity, ordering, shutdown, nesting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspex.actors import Actor, ActorRef, Exit, Node
from dspex.errors import ActorExited, ChildNotFound, ConfigError, StartError, SupervisorError
from dspex.supervision import (
    ChildRestarted,
    ChildRestartIntensityExceeded,
    ChildSpec,
    RestartIntensityExceeded,
    Supervisor,
)
from tests.actors.helpers import FailingInit, Recorder
from tests.supervision.helpers import Events, Stubborn, Worker, worker


async def _crash(node: Node, name: str) -> None:
    ref = node.whereis(name)
    assert ref is not None
    with pytest.raises(ActorExited):
        await ref.call("crash")


async def _restarted(events: Events, n: int = 1) -> list[Any]:
    got = [await events.next() for _ in range(n)]
    assert all(isinstance(e, ChildRestarted) for e in got), got
    return [e.child_id for e in got]  # type: ignore[union-attr]


async def test_children_start_in_order_and_stop_in_reverse(node: Node) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start(node, [worker(i, journal) for i in "abc"])
    assert journal == [("start", "a"), ("start", "b"), ("start", "c")]
    assert [c.id for c in await sup.which_children()] == ["a", "b", "c"]
    await node.stop(sup)
    assert journal[3:] == [("stop", i, "shutdown") for i in "cba"]


async def test_one_for_one_restarts_only_the_crashed_child_with_fresh_state(
    node: Node,
) -> None:
    journal: list[Any] = []
    events = Events()
    await Supervisor.start(node, [worker(i, journal) for i in "abc"], on_event=events)
    for name in "abc":
        assert await node.call(name, "count") == 1
    before = node.whereis("b")
    await _crash(node, "b")
    assert await _restarted(events) == ["b"]
    after = node.whereis("b")
    assert after is not None
    assert after is not before
    assert await after.call("count") == 1  # fresh state: the count starts again
    assert await node.call("a", "count") == 2  # siblings untouched
    assert await node.call("c", "count") == 2
    assert journal.count(("start", "b")) == 2
    assert journal.count(("start", "a")) == 1


async def test_one_for_all_restarts_all_siblings(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    await Supervisor.start(
        node, [worker(i, journal) for i in "abc"], strategy="one_for_all", on_event=events
    )
    refs = {n: node.whereis(n) for n in "abc"}
    journal.clear()
    await _crash(node, "b")
    assert await _restarted(events, 3) == ["a", "b", "c"]
    assert all(node.whereis(n) is not refs[n] for n in "abc")
    # b's terminate saw its crash; the others are stopped newest first; all start again in order
    assert journal[0][:2] == ("stop", "b")
    assert journal[1:] == [
        ("stop", "c", "shutdown"),
        ("stop", "a", "shutdown"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]


async def test_rest_for_one_restarts_only_later_siblings(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    await Supervisor.start(
        node, [worker(i, journal) for i in "abcd"], strategy="rest_for_one", on_event=events
    )
    a = node.whereis("a")
    journal.clear()
    await _crash(node, "b")
    assert await _restarted(events, 3) == ["b", "c", "d"]
    assert node.whereis("a") is a
    assert journal[0][:2] == ("stop", "b")
    assert journal[1:] == [
        ("stop", "d", "shutdown"),
        ("stop", "c", "shutdown"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]


async def test_transient_child_is_not_restarted_after_a_normal_exit(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    sup = await Supervisor.start(node, [worker("t", journal, restart="transient")], on_event=events)
    t = node.whereis("t")
    assert t is not None
    assert await t.call("exit_normally") == "bye"
    assert await t.wait() == "normal"
    (info,) = await sup.which_children()  # the call is queued after the Exit message
    assert info.ref is None
    assert info.id == "t"
    assert events.queue.empty()


async def test_transient_child_is_restarted_after_a_crash(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    await Supervisor.start(node, [worker("t", journal, restart="transient")], on_event=events)
    await _crash(node, "t")
    assert await _restarted(events) == ["t"]


async def test_temporary_child_is_never_restarted(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    sup = await Supervisor.start(
        node, [worker("tmp", journal, restart="temporary")], on_event=events
    )
    await _crash(node, "tmp")
    assert await sup.which_children() == []  # a temporary child's spec is dropped
    assert events.queue.empty()
    assert node.whereis("tmp") is None


async def test_fourth_crash_within_the_window_stops_the_supervisor(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    sup = await Supervisor.start(node, [worker("w", journal)], on_event=events)
    for _ in range(3):
        await _crash(node, "w")
        await _restarted(events)
    await _crash(node, "w")
    assert isinstance(await events.next(), RestartIntensityExceeded)
    assert await sup.wait() == "shutdown"
    assert node.whereis("w") is None


async def test_crashes_spread_over_more_than_max_seconds_are_tolerated(node: Node) -> None:
    journal: list[Any] = []
    events = Events()
    sup = await Supervisor.start(
        node, [worker("w", journal)], max_restarts=1, max_seconds=0.05, on_event=events
    )
    for _ in range(3):
        await _crash(node, "w")
        await _restarted(events)
        await asyncio.sleep(0.06)  # let the window pass: this is what the test is about
    assert sup.alive


async def test_intensity_escalates_to_the_parent_supervisor(node: Node) -> None:
    journal: list[Any] = []
    outer_events, inner_events = Events(), Events()
    inner = Supervisor.child_spec(
        "inner", [worker("w", journal)], max_restarts=0, on_event=inner_events, name="inner"
    )
    outer = await Supervisor.start(node, [inner, worker("sibling", journal)], on_event=outer_events)
    first_inner = node.whereis("inner")
    await _crash(node, "w")
    assert isinstance(await inner_events.next(), RestartIntensityExceeded)
    # the parent sees the inner supervisor exit with "shutdown" and restarts it (permanent)
    event = await outer_events.next()
    assert isinstance(event, ChildRestarted)
    assert event.child_id == "inner"
    assert event.reason == "shutdown"
    assert node.whereis("inner") is not first_inner
    assert await node.call("w", "count") == 1
    assert outer.alive


async def test_a_trapping_parent_sees_the_supervisor_exit(node: Node) -> None:
    journal: list[Any] = []
    parent = await node.spawn(Recorder, trap_exit=True)

    async def start(actor: Actor) -> ActorRef:
        return await actor.spawn_link(
            Supervisor, [worker("w", journal)], "one_for_one", 0, 5.0, None
        )

    class Starter(Recorder):
        async def handle_call(self, msg: Any, caller: Any) -> Any:
            if msg == "start":
                return await start(self)
            return await super().handle_call(msg, caller)

    parent = await node.spawn(Starter, trap_exit=True)
    sup = await parent.call("start")
    await _crash(node, "w")
    assert await parent.call("next_info") == Exit(sup, "shutdown")


async def test_restarting_a_child_whose_init_fails_retries_within_intensity(
    node: Node,
) -> None:
    attempts: list[int] = []

    class FlakyInit(Actor):
        async def init(self, *args: Any) -> None:
            attempts.append(1)
            if len(attempts) in (2, 3):  # the first restart and its retry fail
                raise ValueError("not yet")

        async def handle_call(self, msg: Any, caller: Any) -> Any:
            if msg == "crash":
                raise RuntimeError("crash")
            return msg

    events = Events()
    await Supervisor.start(node, [ChildSpec(id="f", start=FlakyInit, name="f")], on_event=events)
    await _crash(node, "f")
    event = await events.next()
    assert isinstance(event, ChildRestarted)
    assert event.reason == "start_failed"
    assert len(attempts) == 4
    assert await node.call("f", "ping") == "ping"


async def test_a_child_failing_to_start_fails_the_supervisor_start(node: Node) -> None:
    journal: list[Any] = []
    specs = [worker("a", journal), ChildSpec(id="bad", start=FailingInit), worker("c", journal)]
    with pytest.raises(StartError, match="init refused"):
        await Supervisor.start(node, specs)
    assert journal == [("start", "a"), ("stop", "a", "shutdown")]
    assert node.whereis("a") is None


async def test_shutdown_timeout_then_hard_kill(node: Node) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start(
        node,
        [
            ChildSpec(id="s", start=Stubborn, args=("s", journal), name="s", shutdown=0.02),
            ChildSpec(
                id="b", start=Stubborn, args=("b", journal), name="b", shutdown="brutal_kill"
            ),
        ],
    )
    s, b = node.whereis("s"), node.whereis("b")
    assert s is not None
    assert b is not None
    await node.stop(sup)
    assert b.exit_reason == "killed"
    assert s.exit_reason == "killed"


async def test_supervisor_api_manages_children(node: Node) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start(node, [worker("a", journal)])
    ref = await sup.start_child(worker("b", journal))
    assert node.whereis("b") is ref
    with pytest.raises(SupervisorError, match="already has a child"):
        await sup.start_child(worker("b", journal))
    assert await sup.count_children() == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
    await sup.terminate_child("b")
    assert [(c.id, c.ref) for c in await sup.which_children()] == [
        ("a", node.whereis("a")),
        ("b", None),
    ]
    with pytest.raises(SupervisorError, match="running"):
        await sup.delete_child("a")
    restarted = await sup.restart_child("b")
    assert restarted.alive
    assert restarted is not ref
    await sup.terminate_child("b")
    await sup.delete_child("b")
    with pytest.raises(ChildNotFound):
        await sup.terminate_child("b")
    assert sup.alive


async def test_replace_child_restarts_it_from_another_spec(node: Node) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start(node, [worker("a", journal), worker("b", journal)])
    new = await sup.replace_child("a", ChildSpec(id="ignored", start=Recorder, name="a"))
    assert node.whereis("a") is new
    assert await new.call("hello") == "hello"  # a Recorder now
    assert [c.id for c in await sup.which_children()] == ["a", "b"]  # id and position kept


async def test_invalid_supervisor_options_are_config_errors(node: Node) -> None:
    with pytest.raises(StartError) as info:
        await Supervisor.start(node, [], strategy="one_for_some")  # type: ignore[arg-type]
    assert isinstance(info.value.reason, ConfigError)
    with pytest.raises(ConfigError, match="restart must be one of"):
        ChildSpec(id="x", start=Worker, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shutdown"):
        ChildSpec(id="x", start=Worker, shutdown=-1)
    with pytest.raises(StartError) as info:
        await Supervisor.start(node, [worker("a", []), worker("a", [])])
    assert "two children have the id 'a'" in str(info.value)


async def test_supervisors_can_be_named_monitored_and_linked(node: Node) -> None:
    sup = await Supervisor.start(node, [], name="named-sup")
    assert node.whereis("named-sup") is sup
    watcher = await node.spawn(Recorder)
    mref = await watcher.call(("do", lambda actor: actor.monitor(sup)))
    await node.stop(sup, reason="shutdown")
    down = await watcher.call("next_info")
    assert down.monitor == mref
    assert down.reason == "shutdown"


async def test_a_child_with_its_own_intensity_restarts_and_stops_alone_under_one_for_all(
    node: Node,
) -> None:
    journal: list[Any] = []
    events = Events()
    children = [worker("a", journal), worker("b", journal, max_restarts=1, max_seconds=60)]
    sup = await Supervisor.start(node, children, strategy="one_for_all", on_event=events)
    await _crash(node, "b")
    assert await _restarted(events) == ["b"]  # as under a supervisor of its own: a is untouched
    await _crash(node, "b")
    event = await events.next()
    assert isinstance(event, ChildRestartIntensityExceeded)
    assert event.child_id == "b"
    assert [c.id for c in await sup.which_children()] == ["a"]
    assert journal.count(("start", "a")) == 1
    assert await node.call("a", "count") == 1
