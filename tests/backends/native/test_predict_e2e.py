"""Native Predict / ChainOfThought against real DSPy 3.4.1, both over HTTP to one ScriptedLM.

For every corpus signature, demo set and input set, and for ChatAdapter, JSONAdapter,
XMLAdapter and ChainOfThought: the request DSPy sends and the request native sends are equal
(messages byte for byte, and the whole body), and the two predictions hold equal values of
equal types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from dspex.backends.native import NativeChainOfThought, NativePredict
from dspex.backends.native._types import dspy_type_in
from dspex.errors import InputError, ParseError
from dspex.lm import LM, LMClient
from dspex.signature import Signature
from dspex.testing import RecordedRequest, Reply, ScriptedLM

from .corpus import (
    QA,
    Agentic,
    Think,
    demos_for,
    dspy_signatures,
    inputs_for,
    sample,
    search,
    typed,
)

# Signatures the native adapters implement (dspy.Type fields stay on the dspy backend).
CASES = [
    (name, sig)
    for name, sig in dspy_signatures()
    if not any(dspy_type_in(f.annotation) for f in sig.fields.values())
]
MODES = ["chat", "json", "xml", "cot"]
DSPY_ADAPTERS = {"chat": dspy.ChatAdapter, "json": dspy.JSONAdapter, "xml": dspy.XMLAdapter}


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLM]:
    async with ScriptedLM(strict=False) as lm:
        yield lm


@pytest.fixture
async def client() -> AsyncIterator[LMClient]:
    async with LMClient() as c:
        yield c


def _reply_for(sig: type, mode: str) -> str:
    """A well-formed reply for ``sig`` in the adapter's own format, rendered by DSPy."""
    outputs = {k: sample(f.annotation, 0) for k, f in sig.fields.items() if k in sig.output_fields}
    if mode == "cot":
        sig = dspy.ChainOfThought(sig).predict.signature
        outputs = {"reasoning": "Because.", **outputs}
    adapter = DSPY_ADAPTERS.get(mode, dspy.ChatAdapter)()
    return str(adapter.format_assistant_message_content(sig, outputs))


async def _both(
    server: ScriptedLM,
    client: LMClient,
    sig: type,
    mode: str,
    demos: list[dict[str, Any]],
    inputs: dict[str, Any],
    model: str = "openai/scripted",
) -> tuple[tuple[Any, ...], tuple[Any, ...], list[RecordedRequest]]:
    lm = LM(model, api_base=server.base_url, api_key="sk-test")
    adapter = mode if mode in DSPY_ADAPTERS else "chat"

    async def native() -> Any:
        cls = NativeChainOfThought if mode == "cot" else NativePredict
        module = cls(Signature.from_dspy(sig), lm=lm, client=client, demos=demos, adapter=adapter)
        return (await module(inputs)).to_dict()

    async def reference() -> Any:
        module = dspy.ChainOfThought(sig) if mode == "cot" else dspy.Predict(sig)
        for predictor in module.predictors():
            predictor.demos = [dspy.Example(**d) for d in demos]
        dspy_adapter = DSPY_ADAPTERS[adapter]()
        with dspy.context(lm=lm.to_dspy(), adapter=dspy_adapter):
            return dict((await module.acall(**inputs)).items())

    start = len(server.requests)
    got_native = await _outcome(native)
    middle = len(server.requests)
    got_dspy = await _outcome(reference)
    native_requests = server.requests[start:middle]
    dspy_requests = server.requests[middle:]
    assert [r.messages for r in native_requests] == [r.messages for r in dspy_requests]
    assert [r.body for r in native_requests] == [r.body for r in dspy_requests]
    return got_native, got_dspy, native_requests


async def _outcome(run: Any) -> tuple[Any, ...]:
    try:
        return ("ok", typed(await run()))
    except (ParseError, AdapterParseError):
        return ("parse_error",)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "sig"), CASES, ids=[c[0] for c in CASES])
async def test_same_requests_and_predictions_as_dspy(
    server: ScriptedLM, client: LMClient, name: str, sig: type, mode: str
) -> None:
    server.script = _reply_for(sig, mode)
    inputs = inputs_for(sig)
    for demos in demos_for(sig).values():
        for key in ("typical", "edge"):
            got_native, got_dspy, requests = await _both(
                server, client, sig, mode, demos, inputs[key]
            )
            assert got_native == got_dspy
            assert got_native[0] == "ok"
            assert len(requests) == 1


QA_DEMO = {
    "context": "Rome is in Italy.",
    "question": "Capital?",
    "answer": "Rome",
    "confidence": 1.0,
}


@pytest.mark.parametrize("demos", [[], [QA_DEMO]], ids=["no demos", "a demo"])
@pytest.mark.parametrize("mode", MODES)
async def test_unparsable_reply_falls_back_like_dspy(
    server: ScriptedLM, client: LMClient, mode: str, demos: list[dict[str, Any]]
) -> None:
    # (the retry's JSONAdapter writes the demos itself; the first try sent those made once)
    server.script = "I refuse to follow the format."
    inputs = {"context": "Paris is in France.", "question": "Capital of France?"}
    got_native, got_dspy, requests = await _both(server, client, QA, mode, demos, inputs)
    assert got_native == got_dspy == ("parse_error",)
    # ChatAdapter (and XMLAdapter) retry once with JSONAdapter (a second LM call); JSONAdapter
    # does not.
    assert len(requests) == (1 if mode == "json" else 2)


@pytest.mark.parametrize("mode", ["chat", "xml"])
async def test_fallback_reply_in_json_is_parsed_like_dspy(
    server: ScriptedLM, client: LMClient, mode: str
) -> None:
    server.script = ["no headers here", '{"answer": "Paris", "confidence": "0.9"}'] * 2
    inputs = {"context": "Paris is in France.", "question": "Capital of France?"}
    got_native, got_dspy, requests = await _both(server, client, QA, mode, [], inputs)
    assert got_native == got_dspy
    assert got_native == ("ok", typed({"answer": "Paris", "confidence": 0.9}))
    assert len(requests) == 2


async def test_demos_set_on_a_predictor_are_the_ones_its_next_call_sends(
    server: ScriptedLM, client: LMClient
) -> None:
    lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
    server.script = _reply_for(QA, "chat")
    inputs = {"context": "Paris is in France.", "question": "Capital of France?"}
    predict = NativePredict(Signature.from_dspy(QA), lm=lm, client=client, demos=[QA_DEMO])
    other = {**QA_DEMO, "answer": "Roma"}
    for demos in ([QA_DEMO], [other], []):
        predict.demos = demos
        await predict(inputs)
        expected = dspy.ChatAdapter().format(QA, demos, inputs)
        assert server.requests[-1].messages == expected
    # a new signature is sent with the demos written for it (here without one output)
    predict.demos = [QA_DEMO]
    await predict(inputs)
    fewer = QA.delete("confidence")
    server.script = _reply_for(fewer, "chat")
    predict.signature = Signature.from_dspy(fewer)
    await predict(inputs)
    assert server.requests[-1].messages == dspy.ChatAdapter().format(fewer, [QA_DEMO], inputs)


async def test_n_completions_like_dspy(server: ScriptedLM, client: LMClient) -> None:
    replies = [_reply_for(QA, "chat").replace("Paris", city) for city in ("Paris", "Lyon")]
    server.script = Reply(replies)
    lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test", extra={"n": 2})
    native = await NativePredict(QA, lm=lm, client=client)({"context": "c", "question": "q"})
    with dspy.context(lm=lm.to_dspy(), adapter=dspy.ChatAdapter()):
        reference = await dspy.Predict(QA).acall(context="c", question="q")
    assert server.requests[0].body == server.requests[1].body
    assert server.requests[0].body is not None
    assert server.requests[0].body["n"] == 2
    assert server.requests[0].body["temperature"] == 0.7  # DSPy's rule for n > 1
    assert len(native.completions) == 2
    assert [c["answer"] for c in native.completions] == list(reference.completions.answer)


async def test_missing_input_is_an_input_error_naming_it(
    server: ScriptedLM, client: LMClient
) -> None:
    lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
    module = NativePredict("context, question -> answer", lm=lm, client=client)
    with pytest.raises(InputError, match=r"missing input field\(s\) \['question'\]"):
        await module({"context": "only this"})
    with pytest.raises(InputError, match="must be a mapping"):
        await module(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert server.requests == []  # nothing was sent


async def test_optional_and_default_inputs_may_be_left_out(
    server: ScriptedLM, client: LMClient
) -> None:
    server.script = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
    lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
    module = NativePredict("question, hint: str | None -> answer", lm=lm, client=client)
    assert (await module({"question": "q"})).answer == "ok"
    assert "hint" not in server.requests[0].messages[-1]["content"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_reasoning_output_takes_the_reasoning_the_lm_sends_like_dspy(
    server: ScriptedLM, client: LMClient, mode: str
) -> None:
    # a model DSPy does not know as a reasoning model, which still sends reasoning_content:
    # DSPy parses the field from the text, then replaces it with the LM's own reasoning
    server.script = Reply(_reply_for(Think, mode), reasoning="My own thoughts.")
    got_native, got_dspy, _ = await _both(server, client, Think, mode, [], {"question": "q"})
    assert got_native == got_dspy
    assert got_native[0] == "ok"
    values = dict(got_native[1][1])
    assert values["why"] == typed(dspy.Reasoning(content="My own thoughts."))
    assert values["aside"] != values["why"]  # Optional[Reasoning] is not DSPy's native field


CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "search", "arguments": '{"query": "cats", "k": 2}'},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "text",
    ["full", "", "[[ ## answer ## ]]\nonly the answer", '{"answer": "json answer"}'],
    ids=["full-reply", "no-text", "partial-chat", "partial-json"],
)
async def test_tool_calls_the_lm_sends_fill_a_tool_calls_output_like_dspy(
    server: ScriptedLM, client: LMClient, mode: str, text: str
) -> None:
    # the LM answers with tool calls of its own (and maybe text): they are the ToolCalls output,
    # the text fills the other outputs if it parses, else they are None, as in DSPy
    reply = _reply_for(Agentic, mode) if text == "full" else text
    server.script = Reply(reply, tool_calls=[CALL, {**CALL, "id": "call_2"}])
    inputs = {"question": "q", "tools": [dspy.Tool(search)]}
    got_native, got_dspy, requests = await _both(server, client, Agentic, mode, [], inputs)
    assert got_native == got_dspy
    assert got_native[0] == "ok"
    assert len(requests) == 1
    values = dict(got_native[1][1])
    calls = dspy.ToolCalls.from_dict_list(
        [{"id": f"call_{i}", "name": "search", "args": {"query": "cats", "k": 2}} for i in (1, 2)]
    )
    assert values["calls"] == typed(calls)


@pytest.mark.parametrize(
    "reply",
    ["calls", "calls and text", "text", "calls and bad text"],
)
async def test_native_function_calling_like_dspy(
    server: ScriptedLM, client: LMClient, reply: str
) -> None:
    # JSONAdapter on a model with function calling: the tools go as the request's tools, the
    # prompt leaves out the tools input and the ToolCalls output, and the LM's tool calls are
    # that output
    text = {"calls": "", "text": '{"answer": "Paris"}', "calls and bad text": "no json"}
    script = Reply(
        text.get(reply, '{"answer": "Paris"}'),
        tool_calls=None if reply == "text" else [CALL],
    )
    server.script = script
    inputs = {"question": "q", "tools": [dspy.Tool(search)]}
    demos = [{"question": "d", "tools": [], "calls": sample(dspy.ToolCalls, 0), "answer": "a"}]
    got_native, got_dspy, requests = await _both(
        server, client, Agentic, "json", demos, inputs, model="openai/gpt-4o-mini"
    )
    assert got_native == got_dspy
    assert got_native[0] == "ok"
    (request,) = requests
    assert request.body is not None
    assert [t["function"]["name"] for t in request.body["tools"]] == ["search"]
    assert "`tools`" not in request.messages[0]["content"]  # not a field of the prompt
    values = dict(got_native[1][1])
    if reply == "text":
        assert values["calls"] == typed(None)
    else:
        assert values["calls"] != typed(None)
