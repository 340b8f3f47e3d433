"""The name registry, timers, owned tasks and the runtime lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from dspex.errors import ActorExited, NameTaken, NoProc
from dspex.runtime import Runtime
from tests.actors.helpers import Recorder, Terminating


async def test_names_resolve_and_go_when_the_owner_exits(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder, name="svc")
    assert runtime.whereis("svc") is ref
    assert ref.name == "svc"
    assert await runtime.call("svc", "count") == 1
    with pytest.raises(ActorExited):
        await ref.call("crash")
    assert runtime.whereis("svc") is None
    with pytest.raises(NoProc):
        await runtime.call("svc", "count")
    again = await runtime.spawn(Recorder, name="svc")  # the name is free again
    assert runtime.whereis("svc") is again


async def test_duplicate_name_is_a_clear_error(runtime: Runtime) -> None:
    first = await runtime.spawn(Recorder, name="only")
    with pytest.raises(NameTaken, match="'only' is registered to"):
        await runtime.spawn(Recorder, name="only")
    other = await runtime.spawn(Recorder)
    with pytest.raises(NameTaken):
        runtime.register("only", other)
    assert runtime.whereis("only") is first
    runtime.unregister("only")
    runtime.register("only", other)
    assert runtime.whereis("only") is other


async def test_registering_a_dead_actor_raises_noproc(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    await runtime.stop(ref)
    with pytest.raises(NoProc):
        runtime.register("ghost", ref)


async def test_send_after_delivers_info_and_cancel_stops_it(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    cancelled = runtime.send_after(ref, 0.01, "never")
    cancelled.cancel()
    runtime.send_after(ref, 0.02, "tick")
    await ref.call(("do", lambda actor: actor.send_after(0.01, "self-tick")))
    assert await ref.call("next_info") == "self-tick"
    assert await ref.call("next_info") == "tick"


async def test_timers_die_with_their_actor(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    runtime.send_after(ref, 60, "later")
    assert ref._proc.timers
    await runtime.stop(ref)
    assert ref._proc.timers is None


async def test_terminate_runs_on_graceful_stop_and_on_crash(runtime: Runtime) -> None:
    reasons: asyncio.Queue[object] = asyncio.Queue()
    ref = await runtime.spawn(Terminating, reasons)
    await runtime.stop(ref, reason="shutdown")
    assert await reasons.get() == "shutdown"
    ref = await runtime.spawn(Terminating, reasons)
    with pytest.raises(ActorExited):
        await ref.call("crash")
    assert isinstance(await reasons.get(), RuntimeError)


async def test_graceful_stop_processes_queued_messages_first(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    for _ in range(3):
        ref.cast("bump")
    stop = asyncio.ensure_future(runtime.stop(ref))
    late = asyncio.ensure_future(ref.call("count"))
    await stop
    assert ref._proc.reason == "normal"
    with pytest.raises(ActorExited):  # queued behind the stop: told the actor exited
        await late


async def test_stuck_actor_is_killed_after_the_shutdown_timeout(runtime: Runtime) -> None:
    ref = await runtime.spawn(Recorder)
    stuck = asyncio.ensure_future(ref.call("stuck", timeout=None))
    await asyncio.sleep(0)
    assert await runtime.stop(ref, timeout=0.02) == "killed"
    with pytest.raises(ActorExited):
        await stuck


async def test_owned_task_crash_kills_the_actor(runtime: Runtime) -> None:
    async def boom() -> None:
        raise KeyError("from a task")

    ref = await runtime.spawn(Recorder)
    await ref.call(("do", lambda actor: actor.start_task(boom()) and None))
    assert isinstance(await ref.wait(), KeyError)


async def test_runtime_shutdown_stops_everything_and_leaves_no_tasks() -> None:
    before = asyncio.all_tasks()
    reasons: asyncio.Queue[object] = asyncio.Queue()
    async with Runtime() as runtime:
        refs = [await runtime.spawn(Terminating, reasons) for _ in range(5)]
        stuck = await runtime.spawn(Recorder)
        pending = asyncio.ensure_future(stuck.call("stuck", timeout=None))
        await asyncio.sleep(0)
        runtime.shutdown_timeout = 0.05
    assert all(not r.alive for r in refs)
    assert not stuck.alive
    with pytest.raises(ActorExited):
        await pending
    assert [reasons.get_nowait() for _ in range(5)] == ["shutdown"] * 5
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before


async def test_runtime_current_is_set_inside_the_context() -> None:
    async with Runtime() as runtime:
        assert Runtime.current() is runtime
    with pytest.raises(Exception, match="no dspex Runtime"):
        Runtime.current()


async def test_wait_for_name_follows_a_new_registration(runtime: Runtime) -> None:
    old = await runtime.spawn(Recorder, name="svc")
    assert await runtime.wait_for_name("svc", timeout=0) is old
    await runtime.stop(old)
    waiter = asyncio.ensure_future(runtime.wait_for_name("svc", timeout=5))
    await asyncio.sleep(0)
    new = await runtime.spawn(Recorder, name="svc")
    assert await waiter is new
    await runtime.stop(new)
    with pytest.raises(NoProc, match=r"within 0\.01 s"):
        await runtime.wait_for_name("svc", timeout=0.01)


async def test_waiters_for_a_name_no_actor_will_take_fail_at_once(runtime: Runtime) -> None:
    waiters = [asyncio.ensure_future(runtime.wait_for_name("gone", timeout=60)) for _ in "ab"]
    await asyncio.sleep(0)
    runtime.fail_name_waiters("gone", lambda: NoProc("'gone' will not come back"))
    errors = await asyncio.gather(*waiters, return_exceptions=True)
    assert [str(e) for e in errors] == ["'gone' will not come back"] * 2
    assert errors[0] is not errors[1]  # a fresh exception each
    new = await runtime.spawn(Recorder, name="gone")  # the name is free as before
    assert await runtime.wait_for_name("gone", timeout=0) is new
