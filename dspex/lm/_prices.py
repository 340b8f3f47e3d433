"""What a model's tokens cost: LiteLLM's bundled price map, read as a file (LiteLLM itself is
not imported), so that both implementations price a call the same way."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger("dspex.lm")

_MAP = "model_prices_and_context_window_backup.json"


class Price(msgspec.Struct, frozen=True):
    """A model's price per input (prompt) and per output (completion) token, in US dollars."""

    input: float
    output: float

    def cost(self, usage: Mapping[str, Any]) -> float:
        """The cost of ``usage`` (``prompt_tokens``, ``completion_tokens``), in US dollars."""
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return self.of(
            prompt if isinstance(prompt, int) else 0,
            completion if isinstance(completion, int) else 0,
        )

    def of(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost of that many prompt and completion tokens, in US dollars."""
        return prompt_tokens * self.input + completion_tokens * self.output


@functools.cache
def _table() -> dict[str, Any]:
    """LiteLLM's price map, from the file its distribution ships (found by its installed
    metadata, not by the import system: nothing of LiteLLM is looked up or imported); empty
    if LiteLLM is not installed."""
    try:
        path = Path(str(importlib.metadata.distribution("litellm").locate_file(f"litellm/{_MAP}")))
    except importlib.metadata.PackageNotFoundError:
        return {}
    if not path.is_file():
        log.warning("LiteLLM's price map is not at %s: costs are unknown", path)
        return {}
    try:
        table: dict[str, Any] = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError:
        log.warning("LiteLLM's price map %s does not decode: costs are unknown", path)
        return {}
    return table


@functools.lru_cache(maxsize=1024)
def price_of(model: str) -> Price | None:
    """The price of ``model`` (``openai/gpt-4o-mini``, or ``gpt-4o-mini``) as LiteLLM's map
    gives it, or None when the map does not price it (a local or unknown model)."""
    table = _table()
    names = [model]
    if "/" in model:
        names.append(model.split("/", 1)[1])
    for name in names:
        entry = table.get(name)
        if isinstance(entry, dict):
            cost_in = entry.get("input_cost_per_token")
            cost_out = entry.get("output_cost_per_token")
            if isinstance(cost_in, (int, float)) and isinstance(cost_out, (int, float)):
                return Price(float(cost_in), float(cost_out))
    return None


def cost_of(usage_by_model: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The cost of token usage per model (DSPy's ``get_lm_usage()`` shape), or None when a
    model is not priced."""
    total = 0.0
    for model, usage in usage_by_model.items():
        price = price_of(model)
        if price is None:
            return None
        total += price.cost(usage)
    return total
