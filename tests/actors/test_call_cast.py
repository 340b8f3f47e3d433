"""call / cast / deferred replies / timeouts / crashes during calls."""

from __future__ import annotations

import asyncio

import pytest

from dspex.actors import Actor, ActorRef
from dspex.errors import ActorExited, NoProc, StartError, Timeout
from dspex.runtime import Runtime
from tests.actors.helpers import FailingInit, Recorder


async def test_call_returns_the_handlers_reply_and_state_is_kept(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    assert [await ref.call("count") for _ in range(3)] == [1, 2, 3]


async def test_init_receives_spawn_args(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder, 1, "two")
    assert await ref.call("args") == (1, "two")


async def test_stuck_actor_still_gives_the_caller_its_timeout(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    stuck = asyncio.ensure_future(ref.call("stuck", timeout=None))
    await asyncio.sleep(0)  # let the stuck call reach the mailbox first
    with pytest.raises(Timeout, match=r"timed out after 0\.05 s"):
        await ref.call("count", timeout=0.05)
    assert isinstance(Timeout("x"), TimeoutError)
    stuck.cancel()
    await runtime.stop(ref, timeout="brutal_kill")


async def test_late_reply_is_dropped_and_the_actor_keeps_serving(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    with pytest.raises(Timeout):
        await ref.call(("defer", 0.05), timeout=0.01)
    # The deferred reply arrives after the timeout: dropped, nothing breaks.
    assert await ref.call(("defer", 0.06)) == ("deferred", 0.06)
    assert await ref.call("count") == 1


async def test_crash_during_call_gives_actor_exited_at_once(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    with pytest.raises(ActorExited) as info:
        await ref.call("crash", timeout=None)  # no timeout: only the exit can end this call
    assert isinstance(info.value.reason, RuntimeError)
    assert info.value.__cause__ is info.value.reason
    assert not ref.alive
    assert isinstance(await ref.wait(), RuntimeError)


async def test_other_callers_waiting_on_a_crashing_actor_get_actor_exited(
    runtime: Runtime,
) -> None:
    ref = await runtime.spawn(Recorder)
    waiting = [asyncio.ensure_future(ref.call("count", timeout=None)) for _ in range(3)]
    crash = asyncio.ensure_future(ref.call("crash", timeout=None))
    more = [asyncio.ensure_future(ref.call("count", timeout=None)) for _ in range(3)]
    results = await asyncio.gather(*waiting, crash, *more, return_exceptions=True)
    assert results[:3] == [1, 2, 3]
    assert all(isinstance(r, ActorExited) for r in results[3:])


async def test_calling_a_dead_actor_raises_noproc(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    await runtime.stop(ref)
    with pytest.raises(NoProc):
        await ref.call("count")


async def test_calling_an_unknown_name_raises_noproc(runtime: Runtime) -> None:
    with pytest.raises(NoProc, match="nobody"):
        await runtime.call("nobody", "hello")


async def test_cast_never_raises_for_a_dead_target(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    await runtime.stop(ref)
    ref.cast("anything")
    ref.send("anything")
    runtime.cast("unknown-name", "anything")


async def test_cast_is_handled_in_order_with_calls(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    for _ in range(5):
        ref.cast("bump")
    assert await ref.call("count") == 6


async def test_crash_in_cast_ends_the_actor_with_the_exception(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    ref.cast("crash")
    reason = await ref.wait()
    assert isinstance(reason, RuntimeError)
    assert str(reason) == "crash on cast"


async def test_deferred_replies_let_slow_calls_overlap(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    replies = await asyncio.gather(*(ref.call(("defer", 0.05)) for _ in range(20)))
    assert replies == [("deferred", 0.05)] * 20
    # While deferred work runs, the mailbox keeps being served.
    slow = asyncio.ensure_future(ref.call(("defer", 0.2)))
    assert await ref.call("count") == 1
    assert not slow.done()
    await slow


async def test_crash_during_init_is_reported_to_the_starter(runtime: Runtime) -> None:
    before = runtime.processes()
    with pytest.raises(StartError, match="init refused") as info:
        await runtime.spawn(FailingInit, name="failing")
    assert isinstance(info.value.reason, ValueError)
    assert runtime.whereis("failing") is None
    assert runtime.processes() == before


async def test_start_timeout_kills_a_hanging_init(runtime: Runtime) -> None:
    class Hangs(Actor):
        async def init(self, *args: object) -> None:
            await asyncio.Event().wait()

    with pytest.raises(StartError, match="start_timeout"):
        await runtime.spawn(Hangs, start_timeout=0.02)


async def test_handler_can_stop_the_actor_with_a_reason(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    assert await ref.call(("stop", ("shutdown", "done"))) == "stopping"
    assert await ref.wait() == ("shutdown", "done")


async def test_unexpected_call_crashes_like_a_genserver(runtime: Runtime) -> None:
    ref = await runtime.spawn(Actor)
    with pytest.raises(ActorExited, match="does not handle"):
        await ref.call("hello")


async def test_caller_cancellation_skips_the_queued_request(runtime: Runtime) -> None:
    seen: list[object] = []

    class Slow(Actor):
        async def handle_call(self, msg: object, caller: object) -> object:
            seen.append(msg)
            if msg == "first":
                await asyncio.sleep(0.02)
            return msg

    ref: ActorRef = await runtime.spawn(Slow)
    first = asyncio.ensure_future(ref.call("first"))
    second = asyncio.ensure_future(ref.call("second"))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == "first"
    assert await ref.call("third") == "third"
    assert seen == ["first", "third"]
