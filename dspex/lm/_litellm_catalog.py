"""LiteLLM's model catalog, read without importing LiteLLM (importing it takes seconds).

DSPy, through LiteLLM, decides from this catalog what a model supports: the native client reads
the same file LiteLLM ships (the one it uses offline, ``LITELLM_LOCAL_MODEL_COST_MAP=True``),
once, on first use.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import msgspec

_CATALOG_FILE = "model_prices_and_context_window_backup.json"


@functools.cache
def catalog() -> dict[str, Any]:
    """The catalog: model name -> its entry (empty if LiteLLM is not installed)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _CATALOG_FILE
    try:
        data = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def entry(wire_model: str) -> dict[str, Any]:
    """The catalog entry of an OpenAI model (``{}`` when the catalog does not list it)."""
    data = catalog()
    found = data.get(wire_model) or data.get(f"openai/{wire_model}") or {}
    return found if isinstance(found, dict) else {}


@functools.cache
def system_as_user(wire_model: str) -> bool:
    """Whether LiteLLM sends this model's system messages as user messages: an OpenAI o-series
    model (``o`` and a digit, listed for the ``openai`` provider) that the catalog does not say
    supports system messages (o3, o3-mini, o4-mini; not o1)."""
    if len(wire_model) < 2 or wire_model[0] != "o" or not wire_model[1].isdigit():
        return False
    found = catalog().get(wire_model)
    if not isinstance(found, dict) or found.get("litellm_provider") != "openai":
        return False
    return found.get("supports_system_messages") is not True
