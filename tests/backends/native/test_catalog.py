"""The native JSONAdapter asks for response_format exactly when DSPy (LiteLLM engine) does."""

from __future__ import annotations

import dspy
import pytest

from dspex.backends.native import ResponseFormatSupport
from dspex.backends.native._catalog import response_format_support
from dspex.lm import LM

MODELS = [
    "openai/scripted",
    "openai/qwen2.5-coder-1.5b-instruct",
    "openai/gpt-4o-mini",
    "openai/gpt-4o-2024-05-13",
    "openai/gpt-4.1-nano",
    "openai/gpt-3.5-turbo",
    "openai/gpt-4-turbo",
    "openai/o3-mini",
]


@pytest.mark.parametrize("model", MODELS)
def test_support_flags_match_dspy(model: str) -> None:
    reference = ResponseFormatSupport.of_dspy_lm(dspy.LM(model, engine="litellm", api_key="x"))
    assert response_format_support(LM(model, api_key="x")) == reference
