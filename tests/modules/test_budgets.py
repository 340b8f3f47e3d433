"""Budgets of LM use for the runtime, a module type and a call: once one is spent, a call
raises BudgetExceeded before sending its next LM request; concurrent calls overshoot by at most
the calls in flight; budgets and their use show in metrics()."""

from __future__ import annotations

import asyncio
from typing import Any

import dspy
import pytest

import dspex
from dspex.config import Budget, Config
from dspex.errors import BudgetExceeded, ConfigError, InputError
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing import Reply, ScriptedLM, respond

PER_CALL = 100  # tokens each scripted answer uses: 90 prompt + 10 completion
ANSWER = Reply(
    "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]", prompt_tokens=90, completion_tokens=10
)


def _config(**kwargs: Any) -> Config:
    return Config(dspy_workers=0, adaptive={"explore_rate": 0.0}, **kwargs)


def _lm(server: ScriptedLM) -> LM:
    return LM("openai/gpt-4o-mini", api_base=server.base_url, api_key="k")


async def test_a_spent_runtime_budget_refuses_calls_before_sending_anything() -> None:
    budget = Budget(max_tokens=3 * PER_CALL)
    async with (
        ScriptedLM(ANSWER, strict=False) as server,
        Runtime(lm=_lm(server), config=_config(budget=budget)) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        for i in range(3):  # three requests (the same one thrice would be answered from
            await predict(question=f"q{i}")  # the response cache, at no cost)
        await asyncio.sleep(0.05)  # the router has counted the outcomes
        with pytest.raises(BudgetExceeded, match=r"the runtime's budget \(300 tokens\)"):
            await predict(question="q")
        assert len(server.requests) == 3  # the refused call sent nothing
        report = (await rt.metrics()).budgets["runtime"]
        assert (report.max_tokens, report.tokens, report.spent) == (300, 300, True)
        assert report.cost > 0
        # a larger budget, set at run time: calls go through again
        await rt.configure(budget=Budget(max_tokens=10 * PER_CALL))
        assert (await predict(question="q")).answer == "Paris"


async def test_a_module_types_budget_stops_that_type_alone() -> None:
    config = _config(budgets={"Predict": {"max_tokens": PER_CALL}})
    async with (
        ScriptedLM(respond(answer="Paris", reasoning="r"), strict=False) as server,
        Runtime(lm=_lm(server), config=config) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        cot = await dspex.ChainOfThought.create("question -> answer")
        await predict(question="q")
        await asyncio.sleep(0.05)
        with pytest.raises(BudgetExceeded, match="Predict's budget"):
            await predict(question="q")
        assert (await cot(question="q")).answer == "Paris"  # another type: its own budget
        budgets = (await rt.metrics()).budgets
    assert set(budgets) == {"Predict"}
    assert budgets["Predict"].spent


def _search(query: str) -> str:
    """Look something up."""
    return f"results for {query}"


async def test_a_calls_budget_stops_it_before_its_next_lm_request() -> None:
    steps = [
        respond(next_thought="t", next_tool_name="_search", next_tool_args={"query": "x"}),
        respond(next_thought="t", next_tool_name="finish", next_tool_args={}),
        respond(reasoning="r", answer="Paris"),
    ]
    async with (
        ScriptedLM(steps) as server,
        Runtime(lm=_lm(server), config=_config()) as rt,
    ):
        agent = await dspex.ReAct.create("question -> answer", tools=[_search])
        with pytest.raises(BudgetExceeded, match="this call's budget"):
            await agent.execute({"question": "q"}, budget=Budget(max_tokens=1))
        assert len(server.requests) == 1  # one LM request, then the budget stopped the loop
        metrics = await rt.metrics()
    figures = metrics.modules["ReAct"]["native"]
    assert figures.failures == 0  # a budget's stop is not native's failure
    assert figures.prompt_tokens > 0  # what the stopped call used still counts
    assert metrics.usage.total_tokens == figures.prompt_tokens + figures.completion_tokens


class TwoSteps(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.Predict("question -> answer")
        self.check = dspy.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        return self.check(question=self.draft(question=question).answer)


async def test_a_program_calls_budget_covers_its_predictors() -> None:
    async with (
        ScriptedLM(ANSWER, strict=False) as server,
        Runtime(lm=_lm(server), config=_config()),
    ):
        program = await dspex.Module.wrap(TwoSteps(), name="two")
        pred = await program.execute({"question": "q"}, budget=Budget(max_tokens=2 * PER_CALL))
        assert pred.usage["total_tokens"] == 2 * PER_CALL
        with pytest.raises(BudgetExceeded, match="this call's budget"):
            await program.execute({"question": "q2"}, budget=Budget(max_tokens=PER_CALL))
        assert len(server.requests) == 3  # the second predictor's request was never sent


async def test_two_hundred_concurrent_calls_overshoot_by_at_most_those_in_flight() -> None:
    allowed, in_flight = 20, 8
    budget = Budget(max_tokens=allowed * PER_CALL)
    slow = Reply(ANSWER.text, prompt_tokens=90, completion_tokens=10, latency=0.01)
    config = _config(budget=budget, max_concurrency=in_flight)
    async with (
        ScriptedLM(slow, strict=False) as server,
        Runtime(lm=_lm(server), config=config) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        results = await asyncio.gather(
            *(predict(question=f"q{i}") for i in range(200)), return_exceptions=True
        )
        await asyncio.sleep(0.05)
        metrics = await rt.metrics()
    served = [r for r in results if isinstance(r, dspex.Prediction)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(served) + len(refused) == 200
    assert allowed <= len(served) <= allowed + in_flight
    assert len(server.requests) == len(served)  # a refused call sent nothing
    assert metrics.usage.total_tokens == len(served) * PER_CALL
    assert metrics.budgets["runtime"].spent


def test_a_budget_says_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="needs max_tokens, max_cost or both"):
        Budget()
    with pytest.raises(ConfigError, match=r"budget\.max_tokens"):
        Budget(max_tokens=0)
    with pytest.raises(ConfigError, match=r"budget\.max_cost"):
        Budget(max_cost=-1)
    with pytest.raises(ConfigError, match="budget"):
        Config(budget=5)
    assert Config.from_env({"DSPEX_BUDGETS": '{"react": {"max_cost": 0.5}}'}).budgets == {
        "ReAct": Budget(max_cost=0.5)
    }


async def test_a_bad_per_call_budget_is_an_input_error() -> None:
    async with (
        ScriptedLM(ANSWER, strict=False) as server,
        Runtime(lm=_lm(server), config=_config()),
    ):
        predict = await dspex.Predict.create("question -> answer")
        bad: Any = {"max_tokens": 5}
        with pytest.raises(InputError, match=r"budget must be a dspex\.Budget"):
            await predict.execute({"question": "q"}, budget=bad)
        assert len(server.requests) == 0


async def test_a_shadow_run_spends_nothing_of_the_calls_budget() -> None:
    config = _config(shadow={"Predict": {"rate": 1.0}})
    async with (
        ScriptedLM(ANSWER, strict=False) as server,
        Runtime(lm=_lm(server), config=config) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        # dspy serves the call and uses the whole budget; native shadows it, outside it
        await predict.execute({"question": "q"}, implementation="dspy", budget=Budget(max_tokens=1))
        for _ in range(100):
            shadow = (await rt.metrics()).shadow.get("Predict")
            if shadow is not None and shadow.calls:
                break
            await asyncio.sleep(0.02)
    assert shadow is not None
    assert (shadow.calls, shadow.errors) == (1, 0)
    assert len(server.requests) == 2
