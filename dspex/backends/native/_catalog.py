"""What DSPy (through LiteLLM) believes an OpenAI model supports, without importing LiteLLM.

DSPy's JSONAdapter asks for ``response_format`` according to ``dspy.LM.supported_params`` and
``supports_response_schema``, and a ``dspy.Reasoning`` output asks the LM for its own
reasoning according to ``supports_reasoning``: LiteLLM answers these from its model catalog.
(A ``Citations`` output asks Anthropic models for their own citations: :func:`lm_feature`.)
Importing LiteLLM takes seconds, so the native path reads the same catalog file LiteLLM ships
(:mod:`dspex.lm._litellm_catalog`).
"""

from __future__ import annotations

import functools

from dspex.backends.native._adapters import Adapter, JSONAdapter, ResponseFormatSupport
from dspex.backends.native._types import is_citations, is_reasoning, is_tool_calls, is_tools
from dspex.lm import LM
from dspex.lm._litellm_catalog import entry
from dspex.signature import Signature


@functools.cache
def _support(wire_model: str) -> ResponseFormatSupport:
    return ResponseFormatSupport(
        response_format=True,  # every model on LiteLLM's openai route lists response_format
        response_schema=bool(entry(wire_model).get("supports_response_schema")),
    )


def response_format_support(lm: LM) -> ResponseFormatSupport:
    """The support flags ``dspy.LM(lm.model, engine="litellm")`` reports for ``lm``."""
    return _support(lm.wire_model)


@functools.cache
def _flag(wire_model: str, key: str) -> bool:
    return bool(entry(wire_model).get(key))


def supports_reasoning(lm: LM) -> bool:
    """``dspy.LM(lm.model, engine="litellm").supports_reasoning`` for ``lm``."""
    return _flag(lm.wire_model, "supports_reasoning")


def supports_function_calling(lm: LM) -> bool:
    """``dspy.LM(lm.model, engine="litellm").supports_function_calling`` for ``lm``."""
    return _flag(lm.wire_model, "supports_function_calling")


def reasons_natively(lm: LM) -> bool:
    """Whether DSPy turns a ``dspy.Reasoning`` output of a call on ``lm`` into the LM's own
    reasoning (``reasoning_effort``, the field dropped from the prompt): when the LM supports
    reasoning, ``reasoning_effort`` is not set to None, and it is not a GPT-5 model on the chat
    API (whose reasoning LiteLLM does not return there)."""
    effort = lm.extra.get("reasoning_effort", "low")
    return effort is not None and supports_reasoning(lm) and "gpt-5" not in lm.model


def function_calling(signature: Signature, lm: LM, adapter: Adapter) -> str | None:
    """The tools input DSPy sends as the request's ``tools`` (native function calling), or
    None: with an adapter that uses function calling (JSONAdapter's default), a
    ``dspy.ToolCalls`` output, a ``list[dspy.Tool]`` input and an LM with function calling."""
    if not (isinstance(adapter, JSONAdapter) and adapter.use_native_function_calling):
        return None
    if not any(is_tool_calls(f.annotation) for f in signature.outputs):
        return None
    tools = next((f.name for f in signature.inputs if is_tools(f.annotation)), None)
    return tools if tools is not None and supports_function_calling(lm) else None


def lm_feature(signature: Signature, lm: LM, adapter: Adapter) -> str | None:
    """Why DSPy would serve an output of ``signature`` on ``lm`` with one of the LM's own
    features, which the native implementation does not use (None: it would not). DSPy asks a
    reasoning model for its reasoning in place of a ``dspy.Reasoning`` output, an Anthropic
    model for its citations in place of a ``Citations`` output; and its JSONAdapter refuses a
    ``dspy.ToolCalls`` output without a ``list[dspy.Tool]`` input."""
    if isinstance(adapter, JSONAdapter) and adapter.use_native_function_calling:
        calls = next((f.name for f in signature.outputs if is_tool_calls(f.annotation)), None)
        if calls is not None and not any(is_tools(f.annotation) for f in signature.inputs):
            return (
                f"output {calls!r} is a dspy.ToolCalls and no input is a list[dspy.Tool]: "
                "DSPy's JSONAdapter fails such calls (ValueError)"
            )
    for f in signature.outputs:
        if is_reasoning(f.annotation) and reasons_natively(lm):
            return (
                f"output {f.name!r} is a dspy.Reasoning and {lm.model} reasons on its own: DSPy "
                "asks it for its reasoning (reasoning_effort) instead of the field"
            )
        if is_citations(f.annotation) and lm.model.startswith("anthropic/"):
            return (
                f"output {f.name!r} is a Citations and {lm.model} cites on its own: DSPy asks "
                "it for its citations instead of the field"
            )
    return None
