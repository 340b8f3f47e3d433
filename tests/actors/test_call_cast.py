"""call / cast / deferred replies / timeouts / crashes during calls."""

from __future__ import annotations

import asyncio

import pytest

from dspex.actors import NOREPLY, Actor, ActorRef, Caller, Node
from dspex.errors import ActorExited, NoProc, StartError, Timeout
from tests.actors.helpers import FailingInit, Recorder


async def test_call_returns_the_handlers_reply_and_state_is_kept(node: Node) -> None:
    ref = await node.spawn(Recorder)
    assert [await ref.call("count") for _ in range(3)] == [1, 2, 3]


async def test_init_receives_spawn_args(node: Node) -> None:
    ref = await node.spawn(Recorder, 1, "two")
    assert await ref.call("args") == (1, "two")


async def test_stuck_actor_still_gives_the_caller_its_timeout(node: Node) -> None:
    ref = await node.spawn(Recorder)
    stuck = asyncio.ensure_future(ref.call("stuck", timeout=None))
    await asyncio.sleep(0)  # let the stuck call reach the mailbox first
    with pytest.raises(Timeout, match=r"timed out after 0\.05 s"):
        await ref.call("count", timeout=0.05)
    assert isinstance(Timeout("x"), TimeoutError)
    stuck.cancel()
    await node.stop(ref, timeout="brutal_kill")


async def test_late_reply_is_dropped_and_the_actor_keeps_serving(node: Node) -> None:
    ref = await node.spawn(Recorder)
    with pytest.raises(Timeout):
        await ref.call(("defer", 0.05), timeout=0.01)
    # The deferred reply arrives after the timeout: dropped, nothing breaks.
    assert await ref.call(("defer", 0.06)) == ("deferred", 0.06)
    assert await ref.call("count") == 1


async def test_crash_during_call_gives_actor_exited_at_once(node: Node) -> None:
    ref = await node.spawn(Recorder)
    with pytest.raises(ActorExited) as info:
        await ref.call("crash", timeout=None)  # no timeout: only the exit can end this call
    assert isinstance(info.value.reason, RuntimeError)
    assert info.value.__cause__ is info.value.reason
    assert not ref.alive
    assert isinstance(await ref.wait(), RuntimeError)


async def test_other_callers_waiting_on_a_crashing_actor_get_actor_exited(
    node: Node,
) -> None:
    ref = await node.spawn(Recorder)
    waiting = [asyncio.ensure_future(ref.call("count", timeout=None)) for _ in range(3)]
    crash = asyncio.ensure_future(ref.call("crash", timeout=None))
    more = [asyncio.ensure_future(ref.call("count", timeout=None)) for _ in range(3)]
    results = await asyncio.gather(*waiting, crash, *more, return_exceptions=True)
    assert results[:3] == [1, 2, 3]
    assert all(isinstance(r, ActorExited) for r in results[3:])


async def test_calling_a_dead_actor_raises_noproc(node: Node) -> None:
    ref = await node.spawn(Recorder)
    await node.stop(ref)
    with pytest.raises(NoProc):
        await ref.call("count")


async def test_calling_an_unknown_name_raises_noproc(node: Node) -> None:
    with pytest.raises(NoProc, match="nobody"):
        await node.call("nobody", "hello")


async def test_cast_never_raises_for_a_dead_target(node: Node) -> None:
    ref = await node.spawn(Recorder)
    await node.stop(ref)
    ref.cast("anything")
    ref.send("anything")
    node.cast("unknown-name", "anything")


async def test_cast_is_handled_in_order_with_calls(node: Node) -> None:
    ref = await node.spawn(Recorder)
    for _ in range(5):
        ref.cast("bump")
    assert await ref.call("count") == 6


async def test_crash_in_cast_ends_the_actor_with_the_exception(node: Node) -> None:
    ref = await node.spawn(Recorder)
    ref.cast("crash")
    reason = await ref.wait()
    assert isinstance(reason, RuntimeError)
    assert str(reason) == "crash on cast"


async def test_deferred_replies_let_slow_calls_overlap(node: Node) -> None:
    ref = await node.spawn(Recorder)
    replies = await asyncio.gather(*(ref.call(("defer", 0.05)) for _ in range(20)))
    assert replies == [("deferred", 0.05)] * 20
    # While deferred work runs, the mailbox keeps being served.
    slow = asyncio.ensure_future(ref.call(("defer", 0.2)))
    assert await ref.call("count") == 1
    assert not slow.done()
    await slow


async def test_crash_during_init_is_reported_to_the_starter(node: Node) -> None:
    before = node.processes()
    with pytest.raises(StartError, match="init refused") as info:
        await node.spawn(FailingInit, name="failing")
    assert isinstance(info.value.reason, ValueError)
    assert node.whereis("failing") is None
    assert node.processes() == before


async def test_start_timeout_kills_a_hanging_init(node: Node) -> None:
    class Hangs(Actor):
        async def init(self, *args: object) -> None:
            await asyncio.Event().wait()

    with pytest.raises(StartError, match="start_timeout"):
        await node.spawn(Hangs, start_timeout=0.02)


async def test_handler_can_stop_the_actor_with_a_reason(node: Node) -> None:
    ref = await node.spawn(Recorder)
    assert await ref.call(("stop", ("shutdown", "done"))) == "stopping"
    assert await ref.wait() == ("shutdown", "done")


async def test_unexpected_call_crashes_like_a_genserver(node: Node) -> None:
    ref = await node.spawn(Actor)
    with pytest.raises(ActorExited, match="does not handle"):
        await ref.call("hello")


async def test_caller_cancellation_skips_the_queued_request(node: Node) -> None:
    seen: list[object] = []

    class Slow(Actor):
        async def handle_call(self, msg: object, caller: object) -> object:
            seen.append(msg)
            if msg == "first":
                await asyncio.sleep(0.02)
            return msg

    ref: ActorRef = await node.spawn(Slow)
    first = asyncio.ensure_future(ref.call("first"))
    second = asyncio.ensure_future(ref.call("second"))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == "first"
    assert await ref.call("third") == "third"
    assert seen == ["first", "third"]


class Worker(Actor):
    """Answers ``("work", seconds)`` from a task it owns; records what its callers abandoned."""

    async def init(self) -> None:
        self.abandoned: list[float] = []

    async def handle_call(self, msg: object, caller: Caller) -> object:
        if msg == "abandoned":
            return list(self.abandoned)
        assert isinstance(msg, tuple)
        _, seconds = msg
        task = self.start_task(self._work(seconds, caller))

        def abandon() -> None:
            self.abandoned.append(seconds)
            task.cancel()

        caller.on_abandon(abandon)
        return NOREPLY

    async def _work(self, seconds: float, caller: Caller) -> None:
        await asyncio.sleep(seconds)
        caller.reply(seconds)


async def test_on_abandon_runs_when_the_caller_times_out_or_is_cancelled(node: Node) -> None:
    ref = await node.spawn(Worker)
    with pytest.raises(Timeout):
        await ref.call(("work", 10.0), timeout=0.01)
    cancelled = asyncio.ensure_future(ref.call(("work", 20.0)))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await ref.call("abandoned") == [10.0, 20.0]  # and their work was cancelled


async def test_on_abandon_never_runs_for_an_answered_call(node: Node) -> None:
    ref = await node.spawn(Worker)
    assert await asyncio.gather(*(ref.call(("work", 0.001 * i)) for i in range(5))) == [
        0.001 * i for i in range(5)
    ]
    assert await ref.call("abandoned") == []


async def test_on_abandon_set_after_the_caller_gave_up_runs_at_once() -> None:
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    fut.cancel()  # the caller stopped waiting before the actor got to the call
    ran: list[str] = []
    Caller(fut, {}).on_abandon(lambda: ran.append("cancel the work"))
    assert ran == ["cancel the work"]
