"""The name registry, timers, owned tasks and the node lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspex.actors import Actor, Caller, Node
from dspex.errors import ActorError, ActorExited, NameTaken, NoProc
from tests.actors.helpers import Recorder, Terminating
from tests.supervision.helpers import Worker


async def test_names_resolve_and_go_when_the_owner_exits(node: Node) -> None:
    ref = await node.spawn(Recorder, name="svc")
    assert node.whereis("svc") is ref
    assert ref.name == "svc"
    assert await node.call("svc", "count") == 1
    with pytest.raises(ActorExited):
        await ref.call("crash")
    assert node.whereis("svc") is None
    with pytest.raises(NoProc):
        await node.call("svc", "count")
    again = await node.spawn(Recorder, name="svc")  # the name is free again
    assert node.whereis("svc") is again


async def test_duplicate_name_is_a_clear_error(node: Node) -> None:
    first = await node.spawn(Recorder, name="only")
    with pytest.raises(NameTaken, match="'only' is registered to"):
        await node.spawn(Recorder, name="only")
    other = await node.spawn(Recorder)
    with pytest.raises(NameTaken):
        node.register("only", other)
    assert node.whereis("only") is first
    node.unregister("only")
    node.register("only", other)
    assert node.whereis("only") is other


async def test_registering_a_dead_actor_raises_noproc(node: Node) -> None:
    ref = await node.spawn(Recorder)
    await node.stop(ref)
    with pytest.raises(NoProc):
        node.register("ghost", ref)


async def test_send_after_delivers_info_and_cancel_stops_it(node: Node) -> None:
    ref = await node.spawn(Recorder)
    cancelled = node.send_after(ref, 0.01, "never")
    cancelled.cancel()
    node.send_after(ref, 0.02, "tick")
    await ref.call(("do", lambda actor: actor.send_after(0.01, "self-tick")))
    assert await ref.call("next_info") == "self-tick"
    assert await ref.call("next_info") == "tick"


async def test_timers_die_with_their_actor(node: Node) -> None:
    ref = await node.spawn(Recorder)
    node.send_after(ref, 60, "later")
    assert ref._proc.timers
    await node.stop(ref)
    assert ref._proc.timers is None


async def test_terminate_runs_on_graceful_stop_and_on_crash(node: Node) -> None:
    reasons: asyncio.Queue[object] = asyncio.Queue()
    ref = await node.spawn(Terminating, reasons)
    await node.stop(ref, reason="shutdown")
    assert await reasons.get() == "shutdown"
    ref = await node.spawn(Terminating, reasons)
    with pytest.raises(ActorExited):
        await ref.call("crash")
    assert isinstance(await reasons.get(), RuntimeError)


async def test_graceful_stop_processes_queued_messages_first(node: Node) -> None:
    ref = await node.spawn(Recorder)
    for _ in range(3):
        ref.cast("bump")
    stop = asyncio.ensure_future(node.stop(ref))
    late = asyncio.ensure_future(ref.call("count"))
    await stop
    assert ref._proc.reason == "normal"
    with pytest.raises(ActorExited):  # queued behind the stop: told the actor exited
        await late


async def test_stuck_actor_is_killed_after_the_shutdown_timeout(node: Node) -> None:
    ref = await node.spawn(Recorder)
    stuck = asyncio.ensure_future(ref.call("stuck", timeout=None))
    await asyncio.sleep(0)
    assert await node.stop(ref, timeout=0.02) == "killed"
    with pytest.raises(ActorExited):
        await stuck


async def test_owned_task_crash_kills_the_actor(node: Node) -> None:
    async def boom() -> None:
        raise KeyError("from a task")

    ref = await node.spawn(Recorder)
    await ref.call(("do", lambda actor: actor.start_task(boom()) and None))
    assert isinstance(await ref.wait(), KeyError)


async def test_wait_for_name_follows_a_new_registration(node: Node) -> None:
    old = await node.spawn(Recorder, name="svc")
    assert await node.wait_for_name("svc", timeout=0) is old
    await node.stop(old)
    waiter = asyncio.ensure_future(node.wait_for_name("svc", timeout=5))
    await asyncio.sleep(0)
    new = await node.spawn(Recorder, name="svc")
    assert await waiter is new
    await node.stop(new)
    with pytest.raises(NoProc, match=r"within 0\.01 s"):
        await node.wait_for_name("svc", timeout=0.01)


async def test_waiters_for_a_name_no_actor_will_take_fail_at_once(node: Node) -> None:
    waiters = [asyncio.ensure_future(node.wait_for_name("gone", timeout=60)) for _ in "ab"]
    await asyncio.sleep(0)
    node.fail_name_waiters("gone", lambda: NoProc("'gone' will not come back"))
    errors = await asyncio.gather(*waiters, return_exceptions=True)
    assert [str(e) for e in errors] == ["'gone' will not come back"] * 2
    assert errors[0] is not errors[1]  # a fresh exception each
    new = await node.spawn(Recorder, name="gone")  # the name is free as before
    assert await node.wait_for_name("gone", timeout=0) is new


class Busy(Actor):
    """Starts work that runs until cancelled, and tells when it was."""

    async def init(self) -> None:
        self.cancelled = asyncio.Event()

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "work":

            async def work() -> None:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.cancelled.set()
                    raise

            self.start_task(work())
            return "working"
        if msg == "until_cancelled":  # blocks the mailbox until the work was cancelled
            await self.cancelled.wait()
            return "cancelled"
        return msg


async def test_cancel_tasks_cuts_an_actors_work_and_the_actor_lives_on(node: Node) -> None:
    ref = await node.spawn(Busy)
    assert await ref.call("work") == "working"
    node.cancel_tasks(ref)
    assert await ref.call("until_cancelled") == "cancelled"
    assert ref.alive
    assert await ref.call("ping") == "ping"


async def test_processes_lists_the_live_actors_of_a_kind(node: Node) -> None:
    recorder = await node.spawn(Recorder)
    other = await node.spawn(Terminating, asyncio.Queue())
    assert node.processes() == [recorder, other]
    assert node.processes(Recorder) == [recorder]
    assert node.processes(Actor) == [recorder, other]
    await node.stop(recorder)
    assert node.processes(Recorder) == []


async def test_stop_all_stops_every_actor_newest_first(node: Node) -> None:
    journal: list[Any] = []
    for name in "abc":
        await node.spawn(Worker, name, journal)
    await node.stop_all(1.0)
    assert journal[3:] == [("stop", name, "shutdown") for name in "cba"]
    assert node.processes() == []


def test_a_node_needs_an_event_loop() -> None:
    with pytest.raises(ActorError, match="event loop"):
        Node()


async def test_spawning_something_that_is_not_an_actor_is_a_clear_error(node: Node) -> None:
    with pytest.raises(ActorError, match="did not build an Actor"):
        await node.spawn(object)  # type: ignore[type-var]
    assert node.processes() == []
