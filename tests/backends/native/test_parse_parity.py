"""Parsing: the same replies through DSPy 3.4.1's and dspex's parsers give equal values with equal
types, or a parse error in both."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

from dspex.backends.native import ChatAdapter, JSONAdapter
from dspex.signature import Signature

from .corpus import demos_for, dspy_signatures, outcome

# (signature, reply) pairs aimed at one behaviour each.
CHAT_CASES: list[tuple[str, str]] = [
    ("question -> answer", "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"),
    ("question -> answer", "[[ ## answer ## ]] Paris on the header line"),
    ("question -> answer", "preamble\n[[ ## answer ## ]]\nfirst\n[[ ## answer ## ]]\nsecond"),
    ("question -> answer", "  [[ ## answer ## ]] indented header keeps DSPy's offset quirk"),
    ("question -> answer", "[[ ## answer ## ]]"),
    ("question -> answer", "[[ ## answer ## ]]\n\n\n   \n"),
    ("question -> answer", "no headers at all"),
    ("question -> answer", ""),
    ("question -> answer", "   "),
    ("question -> answer", "[[ ## Answer ## ]]\ncase matters"),
    ("question -> answer", "[[ ## answer ## ]]\nline1\r\nline2\rline3\u2028line4"),
    (
        "question -> answer",
        "[[ ## answer ## ]]\nunicode 日本語 🚀\n[[ ## completed ## ]]\ntrailing",
    ),
    ("q -> a, b", "[[ ## b ## ]]\nB first\n[[ ## a ## ]]\nA second"),
    ("q -> a, b", "[[ ## a ## ]]\nonly a"),
    ("q -> n: int", "[[ ## n ## ]]\n42"),
    ("q -> n: int", "[[ ## n ## ]]\n42.0"),
    ("q -> n: int", "[[ ## n ## ]]\n4.5"),
    ("q -> n: int", "[[ ## n ## ]]\n 7 apples"),
    ("q -> n: int", "[[ ## n ## ]]\nseven"),
    ("q -> n: int", "[[ ## n ## ]]\n"),
    ("q -> n: int", '[[ ## n ## ]]\n"12"'),
    ("q -> x: float", "[[ ## x ## ]]\n0.25"),
    ("q -> x: float", "[[ ## x ## ]]\n1e3"),
    ("q -> x: float", "[[ ## x ## ]]\nNaN"),
    ("q -> x: float", "[[ ## x ## ]]\n1,5"),
    ("q -> ok: bool", "[[ ## ok ## ]]\nTrue"),
    ("q -> ok: bool", "[[ ## ok ## ]]\ntrue"),
    ("q -> ok: bool", "[[ ## ok ## ]]\nyes"),
    ("q -> ok: bool", "[[ ## ok ## ]]\n1"),
    ("q -> ok: bool", "[[ ## ok ## ]]\nmaybe"),
    ("q -> xs: list[int]", "[[ ## xs ## ]]\n[1, 2, 3]"),
    ("q -> xs: list[int]", "[[ ## xs ## ]]\n```json\n[1, 2]\n```"),
    ("q -> xs: list[int]", "[[ ## xs ## ]]\n[1, 2,"),
    ("q -> xs: list[int]", "[[ ## xs ## ]]\n(1, 2)"),
    ("q -> xs: list[str]", "[[ ## xs ## ]]\n['a', 'b']"),
    ("q -> xs: list[str]", "[[ ## xs ## ]]\na, b"),
    ("q -> d: dict[str, float]", '[[ ## d ## ]]\n{"a": 1, "b": "2.5"}'),
    ("q -> d: dict[str, float]", "[[ ## d ## ]]\n{'a': 1}"),
    ("q -> d: dict[str, float]", '[[ ## d ## ]]\n{"a": 1} and then some text'),
    ("q -> d: dict[str, Any]", "[[ ## d ## ]]\n{[1]: 2}"),
    ("q -> d: dict[str, Any]", "[[ ## d ## ]]\n{1, 2}"),
    ("q -> t: tuple[int, str]", '[[ ## t ## ]]\n[1, "a"]'),
    ("q -> s: set[int]", "[[ ## s ## ]]\n[1, 1, 2]"),
    ("q -> anything: Any", "[[ ## anything ## ]]\nnot json"),
    ("q -> anything: Any", '[[ ## anything ## ]]\n{"k": [1, null]}'),
    ("q -> label: Literal['pos', 'neg']", "[[ ## label ## ]]\npos"),
    ("q -> label: Literal['pos', 'neg']", "[[ ## label ## ]]\n'neg'"),
    ("q -> label: Literal['pos', 'neg']", "[[ ## label ## ]]\nLiteral[pos]"),
    ("q -> label: Literal['pos', 'neg']", '[[ ## label ## ]]\nstr["neg"]'),
    ("q -> label: Literal['pos', 'neg']", "[[ ## label ## ]]\nPOS"),
    ("q -> pick: Literal[1, 2, 3]", "[[ ## pick ## ]]\n2"),
    ("q -> pick: Literal[1, 2, 3]", "[[ ## pick ## ]]\n'3'"),
    ("q -> pick: Literal[1, 2, 3]", "[[ ## pick ## ]]\n4"),
    ("q -> pick: Literal[True, 'x']", "[[ ## pick ## ]]\nTrue"),
    ("q -> a: str | None", "[[ ## a ## ]]\nNone"),
    ("q -> a: Optional[str]", "[[ ## a ## ]]\nnull"),
    ("q -> a: Optional[str]", "nothing"),
    ("q -> n: int | None", "[[ ## n ## ]]\nNone"),
    ("q -> n: int | None", "[[ ## n ## ]]\nnull"),
    ("q -> n: int | None", "no field"),
    ("q -> u: Union[int, str]", "[[ ## u ## ]]\n5"),
    ("q -> u: Union[int, str]", "[[ ## u ## ]]\nfive"),
    ("q -> deep: list[list[int]]", "[[ ## deep ## ]]\n" + "[" * 3000 + "]" * 3000),
    ("q -> deep: list[int]", "[[ ## deep ## ]]\n" + "[" * 3000),
]

JSON_CASES: list[tuple[str, str]] = [
    ("question -> answer", '{"answer": "Paris"}'),
    ("question -> answer", '```json\n{"answer": "Paris"}\n```'),
    ("question -> answer", 'Sure! {"answer": "Paris"} hope that helps {"answer": "x"}'),
    ("question -> answer", '{"answer": "Paris", "extra": 1}'),
    ("question -> answer", '{"answer": 5}'),
    ("question -> answer", '{"answer": null}'),
    ("question -> answer", '{"answer": ["a", 1]}'),
    ("question -> answer", '{"other": "x"}'),
    ("question -> answer", '[{"answer": "in a list"}]'),
    ("question -> answer", "[1, 2]"),
    ("question -> answer", "not json"),
    ("question -> answer", ""),
    ("question -> answer", "{"),
    ("question -> answer", '{"answer": "unterminated'),
    ("question -> answer", "{'answer': 'python quotes'}"),
    ("question -> answer", 'text {"a": {"b": {"answer": "nested"}}} more'),
    ("q -> n: int, ok: bool", '{"n": "42", "ok": "true"}'),
    ("q -> n: int, ok: bool", '{"n": 4.5, "ok": true}'),
    ("q -> n: int, ok: bool", '{"n": 4, "ok": "maybe"}'),
    ("q -> n: int, ok: bool", '{"ok": false}'),
    ("q -> xs: list[int], d: dict[str, float]", '{"xs": "[1, 2]", "d": {"a": "1.5"}}'),
    ("q -> xs: list[int], d: dict[str, float]", '{"xs": [1, "x"], "d": {}}'),
    ("q -> label: Literal['pos', 'neg']", '{"label": "Literal[\'neg\']"}'),
    ("q -> pick: Literal[1, 2, 3]", '{"pick": "2"}'),
    ("q -> pick: Literal[1, 2, 3]", '{"pick": 2}'),
    ("q -> pick: Literal[1, 2, 3]", '{"pick": true}'),
    ("q -> a: str | None, n: int | None", '{"a": null}'),
    ("q -> a: str | None, n: int | None", '{"a": "None", "n": "None"}'),
    ("q -> deep: Any", '{"deep": ' + "[" * 3000 + "]" * 3000 + "}"),
]


def _pair(text: str) -> tuple[type, Signature]:
    return dspy.Signature(text), Signature.parse(text)


@pytest.mark.parametrize(
    ("text", "reply"), CHAT_CASES, ids=[f"{i}" for i in range(len(CHAT_CASES))]
)
def test_chat_parse_matches_dspy(text: str, reply: str) -> None:
    dspy_sig, sig = _pair(text)
    expected = outcome(dspy.ChatAdapter().parse, dspy_sig, reply)
    assert outcome(ChatAdapter().parse, sig, reply) == expected


@pytest.mark.parametrize(
    ("text", "reply"),
    JSON_CASES + CHAT_CASES,
    ids=[f"{i}" for i in range(len(JSON_CASES) + len(CHAT_CASES))],
)
def test_json_parse_matches_dspy(text: str, reply: str) -> None:
    dspy_sig, sig = _pair(text)
    expected = outcome(dspy.JSONAdapter().parse, dspy_sig, reply)
    assert outcome(JSONAdapter().parse, sig, reply) == expected


def _replies(dspy_sig: type) -> list[str]:
    """Chat and JSON replies DSPy itself would render for the corpus demos, plus mutations."""
    replies: list[str] = []
    for demos in demos_for(dspy_sig).values():
        for demo in demos:
            if all(k in demo for k in dspy_sig.output_fields):
                chat = dspy.ChatAdapter().format_assistant_message_content(dspy_sig, demo)
                js = dspy.JSONAdapter().format_assistant_message_content(dspy_sig, demo)
                replies += [chat, js, "Sure.\n" + chat, js + "\nDone.", chat.replace("\n\n", "\n")]
                first = next(iter(dspy_sig.output_fields))
                replies.append(chat.split(f"[[ ## {first} ## ]]")[0])  # drops everything
                replies.append(chat + f"\n[[ ## {first} ## ]]\nlater duplicate")
    return replies


@pytest.mark.parametrize(
    ("sig_id", "dspy_sig"), dspy_signatures(), ids=[s for s, _ in dspy_signatures()]
)
def test_corpus_replies_parse_like_dspy(sig_id: str, dspy_sig: type) -> None:
    native = Signature.from_dspy(dspy_sig)
    cot_dspy = dspy.ChainOfThought(dspy_sig).predict.signature
    for reply in _replies(dspy_sig):
        for dspy_adapter, native_adapter in (
            (dspy.ChatAdapter, ChatAdapter),
            (dspy.JSONAdapter, JSONAdapter),
        ):
            expected = outcome(dspy_adapter().parse, dspy_sig, reply)
            assert outcome(native_adapter().parse, native, reply) == expected, reply
            cot_reply = "[[ ## reasoning ## ]]\nstep by step\n\n" + reply
            expected = outcome(dspy_adapter().parse, cot_dspy, cot_reply)
            assert outcome(native_adapter().parse, native.with_reasoning(), cot_reply) == expected


@pytest.mark.parametrize(
    "outputs",
    [
        ["[[ ## n ## ]]\n1", "[[ ## n ## ]]\n2", "[[ ## n ## ]]\n3"],
        [{"text": "[[ ## n ## ]]\n1", "logprobs": {"content": [1]}}, {"text": "[[ ## n ## ]]\n2"}],
        ["[[ ## n ## ]]\n1", ""],
        ["[[ ## n ## ]]\n1", None],
        [{"text": None}],
        ["[[ ## n ## ]]\n1", "[[ ## n ## ]]\nnope"],
    ],
)
def test_n_completions_match_dspy_postprocess(outputs: list[Any]) -> None:
    dspy_sig, sig = _pair("q -> n: int")
    adapter = dspy.ChatAdapter()
    expected = outcome(adapter._call_postprocess, dspy_sig, dspy_sig, outputs, None, {})
    assert outcome(ChatAdapter().parse_completions, sig, outputs) == expected
