"""Threads for sync user code: anyio's to_thread under one CapacityLimiter, a slot held until
the code returns, a cancelled caller that stops waiting at once."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

import dspex
from dspex._threads import SyncThreads, ThreadStats, current_threads
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM, respond


def _blocking(gate: threading.Event, running: list[int], seen: list[int]) -> str:
    running.append(1)
    seen.append(len(running))
    gate.wait(10)
    running.pop()
    return "done"


async def _until(check: Any) -> None:
    """Poll ``check`` (a thread's progress has no event to wait on)."""
    while not check():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def test_at_most_the_limit_runs_and_the_rest_wait() -> None:
    threads = SyncThreads(2)
    gate = threading.Event()
    running: list[int] = []
    seen: list[int] = []
    calls = [asyncio.ensure_future(threads.run(_blocking, gate, running, seen)) for _ in range(5)]
    await _until(lambda: threads.stats().waiting == 3 and len(running) == 2)
    assert threads.stats() == ThreadStats(limit=2, busy=2, waiting=3, abandoned=0)
    gate.set()
    assert await asyncio.gather(*calls) == ["done"] * 5
    assert max(seen) == 2  # never a third at once
    await _until(lambda: threads.stats().busy == 0)


async def test_a_cancelled_caller_stops_waiting_but_its_thread_counts_until_it_returns() -> None:
    threads = SyncThreads(1)
    gate = threading.Event()
    running: list[int] = []
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(threads.run(_blocking, gate, running, []), 0.05)
    assert running == [1]  # the code still runs: nothing can stop a thread
    assert threads.stats() == ThreadStats(limit=1, busy=1, waiting=0, abandoned=1)
    queued = asyncio.ensure_future(threads.run(lambda: "next"))
    await asyncio.sleep(0.02)
    assert not queued.done()  # the slot is not free until the abandoned thread returns
    gate.set()
    assert await queued == "next"
    await _until(lambda: threads.stats().busy == 0)
    assert threads.stats().abandoned == 0


async def test_a_call_cancelled_while_queued_never_runs() -> None:
    threads = SyncThreads(1)
    gate = threading.Event()
    ran: list[str] = []
    first = asyncio.ensure_future(threads.run(_blocking, gate, [], []))
    await _until(lambda: threads.stats().busy == 1)
    second = asyncio.ensure_future(threads.run(ran.append, "second"))
    await _until(lambda: threads.stats().waiting == 1)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    gate.set()
    await first
    await _until(lambda: threads.stats().busy == 0)
    assert ran == []


async def test_finish_waits_for_the_thread_before_the_cancel_goes_through() -> None:
    threads = SyncThreads(1)
    gate = threading.Event()
    running: list[int] = []
    call = asyncio.ensure_future(threads.run(_blocking, gate, running, [], finish=True))
    await _until(lambda: running == [1])
    call.cancel()
    await asyncio.sleep(0.02)
    assert not call.done()  # shielded until the thread returns
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert running == []


async def test_the_code_sees_the_callers_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("the caller's")
    assert await current_threads().run(var.get) == "the caller's"


async def test_a_runtime_bounds_sync_tools_and_reports_its_threads() -> None:
    gate = threading.Event()

    def lookup(query: str) -> str:
        """Look something up."""
        gate.wait(10)
        return "Paris"

    script = respond(
        next_thought="look it up",
        next_tool_name="lookup",
        next_tool_args={"query": "capital"},
        answer="Paris",
        reasoning="found",
    )
    async with ScriptedLM(script, strict=False) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
        config = dspex.Config(sync_threads=3, adaptive={"explore_rate": 0.0})
        async with Runtime(lm=lm, config=config) as rt:
            react = await dspex.ReAct.create("question -> answer", tools=[lookup], max_iters=2)
            with pytest.raises(dspex.Timeout):
                await react.execute({"question": "capital?"}, timeout=0.3)
            threads = (await rt.metrics()).threads
            assert threads == ThreadStats(limit=3, busy=1, waiting=0, abandoned=1)
            gate.set()
            await _until(lambda: rt.threads is not None and rt.threads.stats().busy == 0)
            assert (await rt.metrics()).threads == ThreadStats(3, 0, 0, 0)


async def test_a_runtime_with_default_config_reports_its_32_threads() -> None:
    async with Runtime() as rt:
        assert (await rt.metrics()).threads == ThreadStats(limit=32, busy=0, waiting=0, abandoned=0)
        assert current_threads() is rt.threads  # what sync user code in it runs on
