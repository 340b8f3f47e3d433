"""A module that keeps crashing stops alone: the others serve on, its handle says why it
stopped, and the runtime's state stays true."""

from __future__ import annotations

import asyncio
import re

import pytest

import dspex
from dspex.config import Config
from dspex.prediction import Prediction
from dspex.runtime import Runtime
from dspex.testing import Hang, ScriptedLM
from tests.modules.programs import Shout

NAME = r"module 'dspex\.module\.{}\.\d+' stopped: "


async def hundred_calls(module: dspex.ModuleRef) -> list[Prediction]:
    return [await module(question=f"q{i}") for i in range(100)]


async def test_a_module_that_keeps_crashing_stops_alone(rt: Runtime) -> None:
    builds = 0

    def program() -> Shout:  # builds once; every restart then fails, as a lost resource would
        nonlocal builds
        builds += 1
        if builds > 1:
            raise RuntimeError("the program's index is gone")
        return Shout()

    doomed = await dspex.Module.wrap(program, lm=rt.lm, name="doomed")
    others = [
        await dspex.Predict.create("question -> answer"),
        await dspex.ChainOfThought.create("question -> answer"),
        await dspex.Module.wrap(Shout, lm=rt.lm, name="qa"),
    ]
    calls = asyncio.gather(*(hundred_calls(module) for module in others))
    rt.node.exit(doomed.actor, "kill")  # a crash its restarts cannot get past
    answers = await calls
    assert [[p.answer for p in a] for a in answers] == [["Paris"] * 100] * 2 + [["PARIS"] * 100]
    message = NAME.format("doomed") + re.escape(
        "it needed more than 100 restarts within 5 s (Config.max_restarts, "
        "Config.max_seconds); its last restart failed: "
        'RuntimeError("the program\'s index is gone"). It is not restarted again'
    )
    with pytest.raises(dspex.ModuleStopped, match=message) as info:
        await doomed(question="q")
    assert isinstance(info.value, dspex.Unavailable)  # e.g. a 503 in a web app
    assert info.value.module == doomed.name
    assert builds == 1 + 100
    with pytest.raises(dspex.ModuleStopped, match=message):
        await doomed.info()
    with pytest.raises(dspex.ModuleStopped, match=message):
        await doomed.set_demos([])
    await doomed.stop()  # already gone: nothing to do
    assert (rt.state, rt.accepting) == ("running", True)
    assert rt.modules.alive
    report = await rt.metrics()
    assert report.circuits == {}
    assert "Predict" not in report.restarts
    assert "ChainOfThought" not in report.restarts
    fresh = await dspex.Module.wrap(Shout, lm=rt.lm, name="doomed")  # created again, it serves
    assert (await fresh(question="q")).answer == "PARIS"


@pytest.mark.parametrize(
    "config", [Config(max_restarts=2, max_seconds=60, adaptive={"explore_rate": 0.0})]
)
async def test_a_call_in_flight_when_a_module_stops_gets_module_stopped(
    rt: Runtime, server: ScriptedLM
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    other = await dspex.Predict.create("question -> answer")
    for _ in range(2):  # within its budget: restarted, it serves again
        old = predict.actor
        rt.node.exit(old, "kill")
        await old.wait()
        assert (await predict(question="q")).answer == "Paris"
    server.script = Hang()
    before = len(server.requests)
    call = asyncio.ensure_future(predict(question="held by the LM"))
    await server.wait_for_requests(before + 1)  # the call is in flight, at the LM
    rt.node.exit(predict.actor, "kill")  # the third crash: past the budget
    message = NAME.format("Predict") + re.escape(
        "it needed more than 2 restarts within 60 s (Config.max_restarts, Config.max_seconds); "
        "its last crash: 'killed'."
    )
    with pytest.raises(dspex.ModuleStopped, match=message):
        await call
    with pytest.raises(dspex.ModuleStopped, match=message):
        await predict(question="q")
    server.script = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
    assert (await other(question="q")).answer == "Paris"
    assert (rt.state, rt.accepting) == ("running", True)
