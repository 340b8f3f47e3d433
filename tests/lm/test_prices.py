"""Token prices read from LiteLLM's bundled price map without importing LiteLLM: the same
cost LiteLLM computes, None for a model it does not price."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dspex.lm._prices import Price, cost_of, price_of

MODELS = ["gpt-4o-mini", "gpt-4o", "o3-mini", "gpt-4.1", "gpt-3.5-turbo"]


@pytest.mark.parametrize("model", MODELS)
def test_the_cost_is_litellms(model: str) -> None:
    import litellm

    price = price_of(f"openai/{model}")
    assert price is not None
    usage = {"prompt_tokens": 1234, "completion_tokens": 567, "total_tokens": 1801}
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=model, prompt_tokens=1234, completion_tokens=567
    )
    assert price.cost(usage) == pytest.approx(prompt_cost + completion_cost, rel=1e-12)
    assert price_of(model) == price  # with or without the provider


def test_an_unpriced_model_has_no_price() -> None:
    assert price_of("openai/scripted") is None
    assert cost_of({"openai/scripted": {"prompt_tokens": 3}}) is None
    known = price_of("gpt-4o-mini")
    assert isinstance(known, Price)
    usage = {"openai/gpt-4o-mini": {"prompt_tokens": 1000, "completion_tokens": 10}}
    assert cost_of(usage) == pytest.approx(1000 * known.input + 10 * known.output)


def test_reading_prices_does_not_import_litellm() -> None:
    code = (
        "import sys; from dspex.lm._prices import price_of; "
        "assert price_of('openai/gpt-4o-mini') is not None; "
        "assert 'litellm' not in sys.modules, 'litellm was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
