"""The native JSONAdapter asks for response_format, and a dspy.Reasoning output for the LM's own
reasoning, exactly when DSPy (LiteLLM engine) does."""

from __future__ import annotations

import dspy
import pytest

from dspex.backends.native import NativePredict, ResponseFormatSupport
from dspex.backends.native._catalog import (
    reasons_natively,
    response_format_support,
    supports_function_calling,
    supports_reasoning,
)
from dspex.errors import SignatureError
from dspex.lm import LM, LMClient

MODELS = [
    "openai/scripted",
    "openai/qwen2.5-coder-1.5b-instruct",
    "openai/gpt-4o-mini",
    "openai/gpt-4o-2024-05-13",
    "openai/gpt-4.1-nano",
    "openai/gpt-3.5-turbo",
    "openai/gpt-4-turbo",
    "openai/o3-mini",
    "openai/o4-mini",
    "openai/gpt-5",
    "openai/gpt-5-mini",
]


@pytest.mark.parametrize("model", MODELS)
def test_support_flags_match_dspy(model: str) -> None:
    reference = ResponseFormatSupport.of_dspy_lm(dspy.LM(model, engine="litellm", api_key="x"))
    assert response_format_support(LM(model, api_key="x")) == reference


@pytest.mark.parametrize("model", MODELS)
def test_reasoning_and_function_calling_support_match_dspy(model: str) -> None:
    reference = dspy.LM(model, engine="litellm", api_key="x")
    assert supports_reasoning(LM(model, api_key="x")) == reference.supports_reasoning
    assert supports_function_calling(LM(model, api_key="x")) == reference.supports_function_calling


def test_a_reasoning_output_on_a_reasoning_model_is_left_to_dspy() -> None:
    sig = "question -> why: dspy.Reasoning, answer"
    client = LMClient()
    # o3-mini reasons on its own: DSPy drops the field and sends reasoning_effort
    assert reasons_natively(LM("openai/o3-mini"))
    with pytest.raises(SignatureError, match="reasons on its own"):
        NativePredict(dspy.Signature(sig), lm=LM("openai/o3-mini"), client=client)
    # unless reasoning_effort is None, or it is a GPT-5 on the chat API, or a model that does not
    for lm in (
        LM("openai/o3-mini", extra={"reasoning_effort": None}),
        LM("openai/gpt-5"),
        LM("openai/scripted"),
    ):
        assert not reasons_natively(lm)
        NativePredict(dspy.Signature(sig), lm=lm, client=client)


def test_a_citations_output_on_an_anthropic_model_is_left_to_dspy() -> None:
    from dspy.experimental import Citations

    sig = dspy.Signature(
        "question -> answer, citations: Citations", custom_types={"Citations": Citations}
    )
    client = LMClient()
    with pytest.raises(SignatureError, match="cites on its own"):
        NativePredict(sig, lm=LM("anthropic/claude-sonnet-4-5"), client=client)
    NativePredict(sig, lm=LM("openai/gpt-4o-mini"), client=client)


def test_tool_calls_outputs_with_the_json_adapter_follow_dspys_function_calling() -> None:
    from dspex.backends.native import JSONAdapter

    client = LMClient()
    with_tools = dspy.Signature("question, tools: list[dspy.Tool] -> calls: dspy.ToolCalls")
    without = dspy.Signature("question -> calls: dspy.ToolCalls")
    # DSPy's JSONAdapter refuses a ToolCalls output without a tools input: left to dspy
    with pytest.raises(SignatureError, match="no input is a list"):
        NativePredict(without, lm=LM("openai/scripted"), client=client, adapter="json")
    # it sends the tools to an LM with function calling, and the prompt leaves them out
    calling = NativePredict(with_tools, lm=LM("openai/gpt-4o-mini"), client=client, adapter="json")
    assert calling.tools == "tools"
    assert calling.prompt.input_names == ("question",)
    assert calling.prompt.output_names == ()
    # an LM without function calling gets the tools as text, as does any LM with the
    # ChatAdapter, and with the JSONAdapter it falls back to (function calling off)
    fallback = JSONAdapter(use_native_function_calling=False)
    for lm, adapter in (
        (LM("openai/scripted"), "json"),
        (LM("openai/gpt-4o-mini"), "chat"),
        (LM("openai/gpt-4o-mini"), fallback),
    ):
        as_text = NativePredict(with_tools, lm=lm, client=client, adapter=adapter)  # type: ignore[arg-type]
        assert as_text.tools is None
        assert as_text.prompt is as_text.signature
