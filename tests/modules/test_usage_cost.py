"""Usage and cost per call, per module, per program and per runtime, the same from both
implementations: each call's tokens priced by LiteLLM's price map (None when the model is not
in it), summed by the router into each module's figures and the runtime's."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

import dspex
from dspex.config import Config
from dspex.lm import LM
from dspex.lm._prices import price_of
from dspex.runtime import Runtime
from dspex.testing import Reply, ScriptedLM, respond

CONFIG = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})


def _lm(server: ScriptedLM, model: str) -> LM:
    return LM(f"openai/{model}", api_base=server.base_url, api_key="k")


@pytest.mark.parametrize(("implementation", "workers"), [("native", 0), ("dspy", 0), ("dspy", 1)])
async def test_a_call_has_its_cost(implementation: str, workers: int) -> None:
    """On dspy in this process and in a worker process (the cost comes back with the
    prediction) as on native."""
    reply = Reply("[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]", prompt_tokens=1200)
    config = Config(dspy_workers=workers, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM(reply, strict=False) as server,
        Runtime(lm=_lm(server, "gpt-4o-mini"), config=config) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        pred = await predict.execute({"question": "q"}, implementation=implementation)
        metrics = await rt.metrics()
    price = price_of("gpt-4o-mini")
    assert price is not None
    assert pred.usage["prompt_tokens"] == 1200
    assert pred.cost == pytest.approx(price.cost(pred.usage))
    figures = metrics.modules["Predict"][implementation]
    assert (figures.prompt_tokens, figures.completion_tokens) == (
        pred.usage["prompt_tokens"],
        pred.usage["completion_tokens"],
    )
    assert figures.cost == pytest.approx(pred.cost)
    assert metrics.usage.total_tokens == pred.usage["total_tokens"]
    assert metrics.usage.cost == pytest.approx(pred.cost)
    assert metrics.usage.unpriced_calls == 0


async def test_both_implementations_price_a_call_alike() -> None:
    async with (
        ScriptedLM(respond(reasoning="r", answer="Paris"), strict=False) as server,
        Runtime(lm=_lm(server, "gpt-4o"), config=CONFIG) as rt,
    ):
        cot = await dspex.ChainOfThought.create("question -> answer")
        # the same request from each (not the other's reply, from the response cache)
        native = await cot.execute({"question": "q"}, implementation="native", cache=False)
        on_dspy = await cot.execute({"question": "q"}, implementation="dspy", cache=False)
        metrics = await rt.metrics()
    assert native.usage == on_dspy.usage
    assert native.cost is not None
    assert native.cost == pytest.approx(on_dspy.cost)
    assert metrics.usage.cost == pytest.approx(2 * native.cost)
    assert metrics.usage.prompt_tokens == 2 * native.usage["prompt_tokens"]


async def test_an_unpriced_model_has_tokens_and_no_cost() -> None:
    async with (
        ScriptedLM(respond(answer="x"), strict=False) as server,
        Runtime(lm=_lm(server, "scripted"), config=CONFIG) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        preds = [await predict(question=f"q{i}") for i in range(3)]
        metrics = await rt.metrics()
    assert all(p.cost is None and p.usage["total_tokens"] > 0 for p in preds)
    assert metrics.modules["Predict"]["native"].cost is None
    assert metrics.usage.cost is None
    assert metrics.usage.unpriced_calls == 3
    assert metrics.usage.total_tokens == sum(p.usage["total_tokens"] for p in preds)


class Draft(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.Predict("question -> answer")
        self.refine = dspy.ChainOfThought("question -> answer")

    def forward(self, question: str) -> Any:
        return self.refine(question=self.draft(question=question).answer)


async def test_a_program_costs_its_predictors_and_the_runtime_counts_them_once() -> None:
    async with (
        ScriptedLM(respond(reasoning="r", answer="Paris"), strict=False) as server,
        Runtime(lm=_lm(server, "gpt-4o-mini"), config=CONFIG) as rt,
    ):
        program = await dspex.Module.wrap(Draft(), name="qa")
        pred = await program(question="q")
        metrics = await rt.metrics()
    parts = [
        figures
        for label, by_impl in metrics.modules.items()
        if label.startswith("qa.")
        for figures in by_impl.values()
    ]
    assert len(parts) == 2  # qa.draft, qa.refine.predict
    assert pred.cost == pytest.approx(sum(p.cost or 0.0 for p in parts))
    program_figures = metrics.modules["qa"]["dspy"]
    assert program_figures.cost == pytest.approx(pred.cost)
    assert program_figures.prompt_tokens == pred.usage["prompt_tokens"]
    # the runtime's usage counts each LM call once: the predictors', not the program's again
    assert metrics.usage.cost == pytest.approx(pred.cost)
    assert metrics.usage.total_tokens == pred.usage["total_tokens"]
