"""Demos are checked where they enter (``create``, ``set_demos``); demos that do not fit are a
ConfigError that leaves the module as it was: no crash, no restart, no circuit moved."""

from __future__ import annotations

import re
from typing import Any

import dspy
import pytest

import dspex
from dspex.errors import ConfigError
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM
from tests.modules.test_facades import lookup

ROME = {"question": "Capital of Italy?", "answer": "Rome"}


async def assert_unharmed(rt: Runtime, module: dspex.ModuleRef, actor: dspex.ActorRef) -> None:
    """The module kept its actor and still answers; nothing restarted, no circuit moved."""
    assert module.actor is actor
    assert (await module(question="q")).answer.lower() == "paris"
    report = await rt.metrics()
    assert (report.circuits, report.restarts) == ({}, {})


@pytest.mark.parametrize(
    ("demos", "error"),
    [
        (
            [{"q": "Capital of Italy?", "a": "Rome"}],
            "demos[0] has the keys ['q', 'a']: a demo "
            "needs at least one input field ['question'] and one output field ['answer'] of the "
            "signature 'question -> answer' (DSPy would drop it)",
        ),
        (
            [ROME, {"question": "Capital of Spain?", "anwser": "Madrid"}],
            "demos[1] has the keys ['question', 'anwser']: a demo needs at least one input field",
        ),
        (["Capital of Italy? Rome"], "demos[0] must be a mapping of field name (a str) to value"),
        ([{1: "Rome"}], "demos[0] must be a mapping of field name (a str) to value"),
        (ROME, "demos must be a list of mappings of field name to value"),
        (None, "demos must be a list of mappings of field name to value"),
    ],
    ids=["no-field", "typo", "str", "int-key", "one-mapping", "none"],
)
async def test_demos_that_do_not_fit_are_a_config_error_and_change_nothing(
    rt: Runtime, server: ScriptedLM, demos: Any, error: str
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    await predict.set_demos([ROME])
    actor = predict.actor
    for _ in range(5):
        with pytest.raises(ConfigError, match=re.escape(error)):
            await predict.set_demos(demos)
    assert (await predict.info()).demos == 1
    assert await predict.demos() == (ROME,)  # the demos it had, as it serves with them
    await assert_unharmed(rt, predict, actor)
    assert "Rome" in str(server.requests[-1].messages)  # the demos it had are still sent
    with pytest.raises(ConfigError, match=re.escape(error)):  # the same check at create
        await dspex.Predict.create("question -> answer", demos=demos)


async def test_demos_keep_the_keys_dspy_ignores_and_the_demos_it_keeps(
    rt: Runtime, server: ScriptedLM
) -> None:
    cot = await dspex.ChainOfThought.create("context, question -> answer")
    incomplete = {"question": "Capital of Spain?", "answer": "Madrid", "augmented": True}
    assert await cot.set_demos([incomplete]) is None
    assert (await cot.info()).demos == 1
    await cot(context="c", question="q")
    assert "Madrid" in str(server.requests[-1].messages)


class TwoSteps(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.Predict("question -> answer")
        self.check = dspy.Predict("question, draft -> answer")

    def forward(self, question: str) -> Any:
        draft = self.draft(question=question).answer
        return self.check(question=question, draft=draft)


async def test_demos_for_a_program_with_two_predictors_leave_it_and_the_others_serving(
    rt: Runtime,
) -> None:
    cot = await dspex.ChainOfThought.create("question -> answer")  # created earlier, untouched
    program = TwoSteps()
    program.draft.demos = [dspy.Example(**ROME)]
    qa = await dspex.Module.wrap(program, lm=rt.lm, name="qa")
    actor = qa.actor
    for _ in range(5):
        with pytest.raises(ConfigError, match=r"demos= needs a module with one predictor; .* 2"):
            await qa.set_demos([{"question": "q", "answer": "a"}])
    assert (await qa.info()).demos == 1  # the program's own demo, as before
    await assert_unharmed(rt, qa, actor)
    assert (await cot(question="q")).answer == "Paris"
    assert (rt.state, rt.accepting) == ("running", True)


async def test_demos_for_react_are_a_config_error(rt: Runtime) -> None:
    react = await dspex.ReAct.create("question -> answer", tools=[lookup])
    actor = react.actor
    with pytest.raises(ConfigError, match="demos= needs a module with one predictor; ReAct has 2"):
        await react.set_demos([ROME])
    await assert_unharmed(rt, react, actor)
