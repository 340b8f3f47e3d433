"""A module's calls run as tasks of the runtime's TaskSupervisor: a task that ends badly is a
message to the module actor, and no caller is left waiting, with ``Config()`` as it comes (no
call deadline)."""

from __future__ import annotations

import asyncio

import msgspec

import dspex
from dspex.lm import LM
from dspex.runtime import TASKS, Runtime
from dspex.supervision import TaskSupervisorRef
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond

ANSWER = respond(answer="Paris")


async def test_calls_run_under_the_task_supervisor_and_survive_its_crash() -> None:
    # The first attempt of each call is slow; a crash of the task supervisor cancels it, and
    # the caller gets its answer from the resent call (once), never a hang.
    first = True
    arrived = asyncio.Event()

    def script(request: RecordedRequest) -> Reply:
        nonlocal first
        slow, first = first, False
        arrived.set()
        return msgspec.structs.replace(ANSWER(request), latency=30.0 if slow else 0.0)

    async with ScriptedLM(script, strict=False) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
        async with Runtime(lm=lm, config=dspex.Config()) as rt:
            predict = await dspex.Predict.create("question -> answer")
            call = asyncio.ensure_future(predict(question="q"))
            tasks = rt.tasks
            assert isinstance(tasks, TaskSupervisorRef)
            await arrived.wait()  # the call's task waits for the LM
            assert len(tasks.children(predict.actor)) == 1
            rt.node.exit(tasks, "kill")
            pred = await asyncio.wait_for(call, 10)
            assert pred.answer == "Paris"
            restarted = await rt.wait_for_name(TASKS, timeout=5)
            assert restarted is not tasks
            assert predict.actor.alive  # the module actor was never harmed
            assert len(server.requests) == 2


async def test_a_crash_a_call_task_cannot_catch_crashes_the_module_actor_by_message(
    rt: Runtime,
) -> None:
    # The module actor hears of its task's crash as a Down (Task.Supervisor's async_nolink) and
    # decides: its own state is broken, so it crashes, and its supervisor restarts it.
    predict = await dspex.Predict.create("question -> answer")
    assert (await predict(question="q")).answer == "Paris"
    old = predict.actor
    tasks = rt.tasks
    assert tasks is not None

    async def broken() -> None:
        raise RuntimeError("state broke")

    tasks.async_nolink(broken, owner=old, report="abnormal")
    reason = await old.wait()
    assert isinstance(reason, RuntimeError)
    assert (await predict(question="q")).answer == "Paris"  # the restarted incarnation
    assert predict.actor is not old
