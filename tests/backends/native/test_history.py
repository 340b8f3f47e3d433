"""``dspy.History`` natively: the turns DSPy 3.4.1 sends (user/assistant pairs, the output
reminder on each turn that holds inputs), byte for byte with both adapters, and through the
public API on both implementations (the same request on the wire, the same answer)."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

import dspex
from dspex.backends.native import ChatAdapter, JSONAdapter, XMLAdapter
from dspex.config import Config
from dspex.errors import InputError
from dspex.runtime import Runtime
from dspex.signature import Signature
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond

ADAPTERS: list[tuple[Any, Any]] = [
    (dspy.ChatAdapter, ChatAdapter),
    (dspy.JSONAdapter, JSONAdapter),
    (dspy.XMLAdapter, XMLAdapter),
    # the JSONAdapter ChatAdapter falls back to: function calling off
    (
        lambda: dspy.JSONAdapter(use_native_function_calling=False),
        lambda: JSONAdapter(use_native_function_calling=False),
    ),
]


class Chat(dspy.Signature):
    """Answer the question, given the conversation so far."""

    question: str = dspy.InputField()
    history: dspy.History = dspy.InputField()
    answer: str = dspy.OutputField()


class Typed(dspy.Signature):
    """Score the claim against the earlier ones."""

    history: dspy.History = dspy.InputField(desc="earlier claims")
    claim: str = dspy.InputField()
    context: list[str] = dspy.InputField()
    score: int = dspy.OutputField()
    verdict: bool = dspy.OutputField()


HISTORIES = {
    "empty": [],
    "pairs": [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}],
    "input only": [{"question": "q1"}],
    "output only": [{"answer": "a1"}],
    "extra keys": [{"question": "q1", "answer": "a1", "note": "ignored"}],
    "typed": [
        {"claim": "c1", "context": ["x", "y"], "score": 3, "verdict": True},
        {"claim": "c2", "score": 1},
        {"context": []},
    ],
    "multiline": [{"question": "line 1\n\nline 2  ", "answer": "  spaced\n"}],
}

DEMOS = [{"question": "dq", "answer": "da"}, {"claim": "dc", "context": ["z"], "score": 2}]


def _cases() -> list[Any]:
    cases = []
    for name, turns in HISTORIES.items():
        for sig in (Chat, Typed):
            for demos in ([], DEMOS):
                ids = f"{name}|{sig.__name__}|{'demos' if demos else 'no demos'}"
                cases.append(pytest.param(sig, turns, demos, id=ids))
    return cases


def _inputs(sig: type, turns: list[dict[str, Any]]) -> dict[str, Any]:
    inputs: dict[str, Any] = {"history": dspy.History(messages=turns)}
    if sig is Chat:
        inputs["question"] = "now?"
    else:
        inputs.update(claim="c3", context=["w"])
    return inputs


@pytest.mark.parametrize(("sig", "turns", "demos"), _cases())
def test_history_turns_match_dspy(sig: type, turns: list[dict[str, Any]], demos: list) -> None:
    inputs = _inputs(sig, turns)
    native = Signature.from_dspy(sig)
    cot = dspy.ChainOfThought(sig).predict.signature
    for dspy_adapter, native_adapter in ADAPTERS:
        expected = dspy_adapter().format(sig, demos, inputs)
        assert native_adapter().format(native, demos, inputs) == expected
        cot_expected = dspy_adapter().format(cot, demos, inputs)
        assert native_adapter().format(native.with_reasoning(), demos, inputs) == cot_expected
    if turns:  # the turns are messages of their own, not one JSON value in the user message
        assert len(ChatAdapter().format(native, [], inputs)) > 2


def test_no_history_given_formats_the_other_inputs_like_dspy() -> None:
    native = Signature.from_dspy(Chat)
    for dspy_adapter, native_adapter in ADAPTERS:
        inputs = {"question": "alone"}
        assert native_adapter().format(native, [], inputs) == dspy_adapter().format(
            Chat, [], inputs
        )


class Agent(dspy.Signature):
    """Call tools, then answer."""

    question: str = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    calls: dspy.ToolCalls = dspy.OutputField()
    answer: str = dspy.OutputField()


def _calls(*ids: str | None, results: list[Any] | None = None) -> Any:
    calls = [
        dspy.ToolCalls.ToolCall(id=i, name="search", args={"q": f"x{n}"}) for n, i in enumerate(ids)
    ]
    value = dspy.ToolCalls(tool_calls=calls)
    if results is not None:
        answers = dspy.ToolCallResults.from_tool_calls_and_values(value, results)
        value = dspy.ToolCalls(tool_calls=calls, tool_call_results=answers)
    return value


TOOL_TURNS = {
    "calls": [{"question": "q1", "calls": _calls("c1")}],
    "calls and answer": [{"question": "q1", "calls": _calls("c1", "c2"), "answer": "a1"}],
    "calls with results": [
        {"question": "q1", "calls": _calls("c1", "c2", results=["r1", {"hits": [1, 2]}])}
    ],
    "results and answer": [
        {"question": "q1", "calls": _calls("c1", results=["r1"]), "answer": "a1"},
        {"question": "q2", "answer": "a2"},
    ],
    "results without ids": [{"question": "q1", "calls": _calls(None, results=["r1"])}],
    "output only": [{"calls": _calls("c1", results=[3])}],
    "as a dict": [{"question": "q1", "calls": {"tool_calls": [{"name": "search", "args": {}}]}}],
}


@pytest.mark.parametrize("turns", list(TOOL_TURNS.values()), ids=list(TOOL_TURNS))
@pytest.mark.parametrize("sig", [Agent, Chat])
def test_tool_calls_in_history_match_dspy(sig: type, turns: list[dict[str, Any]]) -> None:
    history = dspy.History(messages=turns)
    inputs: dict[str, Any] = {"question": "now", "history": history}
    if sig is Agent:
        sig = Agent.prepend("history", dspy.InputField(), type_=dspy.History)
        inputs["tools"] = []
    native = Signature.from_dspy(sig)
    for dspy_adapter, native_adapter in ADAPTERS:
        expected = dspy_adapter().format(sig, [], inputs)
        assert native_adapter().format(native, [], inputs) == expected


def test_tool_calls_in_history_that_do_not_validate_are_an_input_error() -> None:
    turn = {"question": "q", "t": {"tool_calls": "not a list"}}
    inputs = {"question": "now", "history": dspy.History(messages=[turn])}
    with pytest.raises(InputError, match="tool calls"):
        ChatAdapter().format(Signature.from_dspy(Chat), [], inputs)


@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
async def test_history_through_both_implementations(adapter: str) -> None:
    def answer(request: RecordedRequest) -> Reply:
        return respond(answer="Paris")(request)

    config = Config(adaptive={"explore_rate": 0.0})
    async with ScriptedLM(answer) as server:
        # each implementation sends its own request (not the other's from the cache)
        lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="sk-test", cache=False)
        async with Runtime(lm=lm, config=config):
            chat = await dspex.Predict.create(Chat, adapter=adapter)
            history = dspy.History(messages=HISTORIES["pairs"])
            served = [
                await chat.execute({"question": "q3", "history": history}, implementation=impl)
                for impl in ("native", "dspy")
            ]
    assert [(p.answer, p.implementation) for p in served] == [
        ("Paris", "native"),
        ("Paris", "dspy"),
    ]
    native, on_dspy = server.requests
    assert native.body == on_dspy.body  # byte-identical requests
    assert native.body is not None
    assert [m["role"] for m in native.body["messages"]] == [
        "system",
        *("user", "assistant") * 2,
        "user",
    ]


@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
async def test_a_history_of_tool_calls_through_both_implementations(adapter: str) -> None:
    sig = Agent.prepend("history", dspy.InputField(), type_=dspy.History)
    config = Config(adaptive={"explore_rate": 0.0})
    calls = '{"tool_calls": [{"name": "search", "args": {"q": "y"}}]}'
    async with ScriptedLM(respond(answer="Paris", calls=calls)) as server:
        # each implementation sends its own request (not the other's from the cache)
        lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="sk-test", cache=False)
        async with Runtime(lm=lm, config=config):
            agent = await dspex.Predict.create(sig, adapter=adapter)
            history = dspy.History(messages=TOOL_TURNS["results and answer"])
            inputs = {"question": "q3", "history": history, "tools": [dspy.Tool(_search)]}
            served = [
                await agent.execute(inputs, implementation=impl) for impl in ("native", "dspy")
            ]
    assert [(p.answer, p.implementation) for p in served] == [
        ("Paris", "native"),
        ("Paris", "dspy"),
    ]
    assert served[0].calls == served[1].calls
    native, on_dspy = server.requests
    assert native.body == on_dspy.body  # byte-identical requests
    assert native.body is not None
    roles = [m["role"] for m in native.body["messages"]]
    if adapter == "json":  # function calling: the calls' results are tool messages
        assert roles == ["system", "user", "assistant", "tool", "user", "assistant", "user"]
    else:
        assert roles == ["system", "user", "assistant", "user", "user", "assistant", "user"]


def _search(q: str) -> str:
    """Search."""
    return q
