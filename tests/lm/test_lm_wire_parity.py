"""The native client sends the same request body as DSPy 3.4.1 (LM.to_dspy()), by whichever of
DSPy's engines the request goes (its default engine, lm15, or LiteLLM's; see dspex.lm._engine).

DSPy is the oracle: each case sends one call through ``lm.to_dspy()`` and the equivalent call
through LMClient to a ScriptedLM, and compares the recorded bodies byte for byte.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

from dspex.errors import LMError
from dspex.lm import LM, LMClient
from dspex.testing import ScriptedLM

ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("openai/my-model", {}, {}),
    ("openai/my-model", {"temperature": 0.0, "max_tokens": 256}, {}),
    ("openai/org/my-model", {"temperature": 0.5}, {"temperature": 0.9, "max_tokens": 7}),
    (
        "openai/my-model",
        {
            "temperature": 0.2,
            "max_tokens": 10,
            "extra": {
                "top_p": 0.9,
                "stop": ["\n\n"],
                "seed": 1,
                "presence_penalty": 0.1,
                "frequency_penalty": 0.2,
                "logit_bias": {"50256": -100},
                "response_format": {"type": "json_object"},
                "logprobs": True,
                "top_logprobs": 2,
                "custom_field": 3,
            },
        },
        {"n": 2},
    ),
    ("openai/gpt-5-mini", {"temperature": 1.0, "max_tokens": 16000}, {}),
]


async def dspy_body(lm: LM, call: dict[str, Any]) -> bytes:
    async with ScriptedLM("ok") as server:
        local = LM(lm.model, api_base=server.base_url, api_key="k", **_settings(lm))
        dspy_lm = local.to_dspy()
        await dspy_lm.acall("Hello there", **call)
        await dspy_lm.aclose()
    return server.requests[0].content


async def native_body(lm: LM, messages: list[dict[str, Any]], call: dict[str, Any]) -> bytes:
    async with ScriptedLM("ok") as server, LMClient() as client:
        local = LM(lm.model, api_base=server.base_url, api_key="k", **_settings(lm))
        await client.complete(local, messages, **call)
    return server.requests[0].content


def _settings(lm: LM) -> dict[str, Any]:
    return {
        "temperature": lm.temperature,
        "max_tokens": lm.max_tokens,
        "extra": lm.extra,
        "dspy_engine": lm.dspy_engine,
    }


@pytest.mark.parametrize("engine", ["auto", "litellm"])
@pytest.mark.parametrize(("model", "settings", "call"), CASES)
async def test_same_body_as_dspy(
    model: str, settings: dict[str, Any], call: dict[str, Any], engine: str
) -> None:
    lm = LM(model, dspy_engine=engine, **settings)  # type: ignore[arg-type]
    expected = await dspy_body(lm, call)
    messages = [{"role": "user", "content": "Hello there"}]
    assert await native_body(lm, messages, call) == expected


async def test_same_body_for_a_dspy_predict_call() -> None:
    import dspy

    async with ScriptedLM(ANSWER) as server:
        lm = LM("openai/my-model", api_base=server.base_url, api_key="k", temperature=0.0)
        dspy_lm = lm.to_dspy()
        with dspy.context(lm=dspy_lm):
            prediction = await dspy.Predict("question -> answer").acall(question="Capital?")
        await dspy_lm.aclose()
        async with LMClient() as client:
            completion = await client.complete(lm, server.requests[0].messages)
    assert prediction.answer == "Paris"
    assert completion.text == ANSWER
    dspy_request, native_request = server.requests
    assert list((native_request.body or {}).items()) == list((dspy_request.body or {}).items())


TOOL_CALL = {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{}"}}

MESSAGE_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    # an assistant turn of tool calls only: LiteLLM leaves the None content out
    (
        "openai/my-model",
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "c1", "name": "get", "content": "r"},
        ],
    ),
    # o-series models without system messages in LiteLLM's catalog: system sent as user
    ("openai/o3-mini", [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]),
    ("openai/o4-mini", [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]),
    # ... but not o1, which the catalog says takes them, nor any other model
    ("openai/o1", [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]),
    ("openai/gpt-4o-mini", [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]),
]


@pytest.mark.parametrize(("model", "messages"), MESSAGE_CASES)
async def test_messages_go_on_the_wire_as_litellm_sends_them(
    model: str, messages: list[dict[str, Any]]
) -> None:
    settings = {"temperature": 1.0, "max_tokens": 16000} if "/o" in model else {}
    async with ScriptedLM("ok") as server:
        lm = LM(model, api_base=server.base_url, api_key="k", **settings)  # type: ignore[arg-type]
        dspy_lm = lm.to_dspy()
        await dspy_lm.acall(messages=messages)
        await dspy_lm.aclose()
        async with LMClient() as client:
            await client.complete(lm, messages)
    dspy_request, native_request = server.requests
    assert native_request.content == dspy_request.content  # byte for byte, key order included


REASONING_REPLIES = [
    {"reasoning": "because"},  # vLLM's and OpenRouter's name for it
    {"reasoning": "r", "reasoning_content": "rc"},  # reasoning_content wins
    {"reasoning": "r", "reasoning_content": ""},  # even empty for LiteLLM; not for lm15
    {"reasoning": ""},
    {"reasoning_content": 5},  # LiteLLM refuses it; lm15 reads it as text
]


@pytest.mark.parametrize("engine", ["auto", "litellm"])
@pytest.mark.parametrize("fields", REASONING_REPLIES)
async def test_the_reasoning_a_server_sends_is_read_as_dspy_reads_it(
    fields: dict[str, Any], engine: Literal["auto", "litellm"]
) -> None:
    import json

    from dspex.testing import Malformed

    reply = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x", **fields},
                "finish_reason": "stop",
            }
        ],
    }
    async with ScriptedLM(Malformed(json.dumps(reply))) as server:
        lm = LM("openai/m", api_base=server.base_url, api_key="k", dspy_engine=engine)
        dspy_lm = lm.to_dspy()
        try:
            outputs = await dspy_lm.acall("hi")
        except Exception:
            outputs = None
        await dspy_lm.aclose()
        async with LMClient() as client:
            completion = await client.complete(lm, [{"role": "user", "content": "hi"}])
    if outputs is None:  # native is more lenient: it keeps the text, drops the odd reasoning
        assert (completion.text, completion.reasonings) == ("x", [])
        return
    expected = outputs[0].get("reasoning_content") if isinstance(outputs[0], dict) else None
    assert (completion.reasonings[0] if completion.reasonings else None) == expected


async def test_a_reply_of_text_parts_is_read_as_dspys_default_engine_reads_it() -> None:
    import json

    from dspex.testing import Malformed

    parts = [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]
    reply = {"model": "m", "choices": [{"message": {"role": "assistant", "content": parts}}]}
    async with ScriptedLM(Malformed(json.dumps(reply))) as server:
        lm = LM("openai/m", api_base=server.base_url, api_key="k")
        dspy_lm = lm.to_dspy()
        outputs = await dspy_lm.acall("hi")
        await dspy_lm.aclose()
        async with LMClient() as client:
            completion = await client.complete(lm, [{"role": "user", "content": "hi"}])
            with pytest.raises(LMError, match=r"not a chat\.completion"):  # LiteLLM refuses it
                await client.complete(lm, [{"role": "user", "content": "hi"}], n=1)
    assert outputs == completion.texts == ["ab"]


# Requests the rule of dspex.lm._engine sends by DSPy's default engine: plain DSPy (a dspy.LM
# of its own, engine "auto") is the oracle for the native client's bytes
LM15_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("openai/gpt-4o-mini", {}, [{"role": "user", "content": "hi"}]),
    (
        "openai/gpt-4.1",
        {"temperature": 0, "max_tokens": 100},
        [{"role": "system", "content": "s"}, {"role": "user", "content": "é 😀 \u2028 \\ /"}],
    ),
    (
        "openai/deepseek-chat",
        {"temperature": 2, "top_p": 2.5e-05, "seed": -5, "stop": "x"},
        [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "c"},
        ],
    ),
    (
        "openai/Qwen/Qwen2.5-7B",
        {"frequency_penalty": -2, "presence_penalty": 2.0, "stop": ["a", "b", "c", "d"]},
        [{"role": "user", "content": "a"}, {"role": "user", "content": ""}],
    ),
    (
        "openai/llama-3.1-8b",
        {
            "max_tokens": 10,
            "temperature": 1e-7,
            "top_p": 0.9,
            "seed": 1,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.2,
            "stop": ["\n\n", "é"],
        },
        [{"role": "assistant", "content": "first"}, {"role": "user", "content": "y"}],
    ),
]


@pytest.mark.parametrize(("model", "params", "messages"), LM15_CASES)
async def test_native_writes_what_plain_dspy_sends_by_its_default_engine(
    model: str, params: dict[str, Any], messages: list[dict[str, Any]]
) -> None:
    import dspy

    async with ScriptedLM("ok") as server:
        plain = dspy.LM(model, api_base=server.base_url, api_key="k", cache=False, **params)
        await plain.acall(messages=messages)
        await plain.aclose()
        extra = {k: v for k, v in params.items() if k not in ("temperature", "max_tokens")}
        lm = LM(
            model,
            api_base=server.base_url,
            api_key="k",
            temperature=params.get("temperature"),
            max_tokens=params.get("max_tokens"),
            extra=extra,
        )
        async with LMClient() as client:
            await client.complete(lm, messages)
    by_dspy, native = server.requests
    assert by_dspy.headers["user-agent"].startswith("lm15/")  # plain DSPy's default engine
    assert native.content == by_dspy.content
