"""Parsing: the same replies through DSPy 3.4.1's and dspex's parsers give equal values with equal
types, or a parse error in both."""

from __future__ import annotations

import json
from typing import Any, Optional

import dspy
import pytest
from dspy.experimental import Citations, Document

from dspex.backends.native import ChatAdapter, JSONAdapter, XMLAdapter
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


# XMLAdapter: tags, nested XML guided by the type's schema, escapes, malformed XML.
XML_CASES: list[tuple[str, str]] = [
    ("question -> answer", "<answer>Paris</answer>"),
    ("question -> answer", "<answer>\nParis\n</answer>"),
    ("question -> answer, why", "\n<answer>Paris</answer>\n<why>The capital.</why>\n"),
    ("question -> answer, why", "<why>B first</why><answer>A second</answer>"),
    ("question -> answer, why", "<answer>Paris</answer>"),
    ("question -> answer", "Sure! <answer>x</answer> done"),
    ("question -> answer", "<answer>one</answer><answer>two</answer>"),
    ("question -> answer", "<answer>x &amp; y &lt; z &gt; w</answer>"),
    ("question -> answer", "<answer>x & y</answer>"),
    ("question -> answer", "<answer>unclosed"),
    ("question -> answer", "<answer>see <b>bold</b> tail</answer>"),
    ("question -> answer", "<?xml version='1.0'?><answer>x</answer>"),
    ("question -> answer", "<answer>x</answer><!-- note -->"),
    ("question -> answer", "<Answer>case matters</Answer>"),
    ("question -> answer", "<answer/>"),
    ("question -> answer", "<answer>\ud800</answer>"),
    ("question -> answer", "<answer>a\r\nb\rc</answer>"),
    ("question -> answer", "<answer><![CDATA[<b> & ]]></answer>"),
    ("question -> answer", ""),
    ("question -> answer", "no tags at all"),
    ("-> number: int, flag: bool", "<number>42</number>\n<flag>true</flag>"),
    ("-> number: int", "<number>not_a_number</number>"),
    ("-> number: int", "<number> 7 </number>"),
    ("-> number: int", "<number>4.5</number>"),
    ("-> number: int", "<number><x>1</x></number>"),
    ("q -> f: float", "<f>1e3</f>"),
    ("q -> ok: bool", "<ok>True</ok>"),
    ("q -> ok: bool", "<ok>maybe</ok>"),
    ("q -> a: list[int]", "<a><item>1</item><item>2</item></a>"),
    ("q -> a: list[int]", "<a>[1, 2]</a>"),
    ("q -> a: list[int]", "<a></a>"),
    ("q -> a: list[int]", "<a/>"),
    ("q -> a: list[int]", "<a>1, 2</a>"),
    ("q -> a: list[int]", "<a>1</a><a>2</a>"),
    ("q -> a: list[int]", "<a><item>1</item><item>x</item></a>"),
    ("q -> a: list[str]", "<a><item>x &amp; y</item><item/></a>"),
    ("q -> a: list[str]", "<a><n>1</n><n>2</n></a>"),
    ("q -> d: dict[str, int]", '<d><x>1</x><entry key="a b">2</entry></d>'),
    ("q -> d: dict[str, int]", "<d></d>"),
    ("q -> d: dict[str, int]", '<d>{"a": 1}</d>'),
    ("q -> d: dict[str, int]", "<d><x>1</x><x>2</x></d>"),
    ("q -> d: dict[str, list[int]]", "<d><x><item>1</item></x><y>[2, 3]</y></d>"),
    ("q -> a: list[dict[str, int]]", "<a><item><x>1</x></item><item><y>2</y></item></a>"),
    ("q -> a: Optional[int]", "<a></a>"),
    ("q -> a: Optional[int]", "<a>3</a>"),
    ("q -> a: int | None", "<a> </a>"),
    ("q -> a: Optional[list[int]]", "<a><item>1</item></a>"),
    ("q -> a: Optional[list[int]]", "<a/>"),
    ("q -> a: Optional[str]", "<a>None</a>"),
    ("q -> u: Union[int, str]", "<u>5</u>"),
    ("q -> u: Union[int, str]", "<u>five</u>"),
    ("q -> u: Union[int, str]", "<u><x>1</x></u>"),
    ("q -> label: Literal['pos', 'neg']", "<label>pos</label>"),
    ("q -> label: Literal['pos', 'neg']", "<label>'neg'</label>"),
    ("q -> label: Literal['pos', 'neg']", "<label>maybe</label>"),
    (
        "q -> t: tuple[int, str], s: set[int]",
        "<t><item>1</item><item>a</item></t><s><item>1</item><item>1</item></s>",
    ),
    ("q -> anything: Any", "<anything><k>v</k><n><item>1</item></n></anything>"),
    ("q -> anything: Any", "<anything>[1, 2]</anything>"),
    ("q -> out: dict[str, Any]", '<out><entry key="1x">a</entry><ok-ay>b</ok-ay></out>'),
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


@pytest.mark.parametrize(
    ("text", "reply"),
    XML_CASES + CHAT_CASES[:12] + JSON_CASES[:12],
    ids=[f"{i}" for i in range(len(XML_CASES) + 24)],
)
def test_xml_parse_matches_dspy(text: str, reply: str) -> None:
    dspy_sig, sig = _pair(text)
    expected = outcome(dspy.XMLAdapter().parse, dspy_sig, reply)
    assert outcome(XMLAdapter().parse, sig, reply) == expected


class Picture(dspy.Signature):
    """Find a cover picture."""

    q: str = dspy.InputField()
    cover: Optional[dspy.Image] = dspy.OutputField()  # noqa: UP045


PICTURES = [
    "https://example.com/cover.png",
    "data:image/png;base64,iVBORw0KGgo=",
    '{"url": "https://example.com/cover.png"}',
    "None",
    "not a url",
    "",
]


@pytest.mark.parametrize("text", PICTURES)
def test_image_outputs_parse_like_dspy(text: str) -> None:
    sig = Signature.from_dspy(Picture)
    replies = {
        (dspy.ChatAdapter, ChatAdapter): f"[[ ## cover ## ]]\n{text}\n\n[[ ## completed ## ]]",
        (dspy.JSONAdapter, JSONAdapter): json.dumps({"cover": text}),
        (dspy.XMLAdapter, XMLAdapter): f"<cover>{text}</cover>",
    }
    for (dspy_adapter, native_adapter), reply in replies.items():
        expected = outcome(dspy_adapter().parse, Picture, reply)
        assert outcome(native_adapter().parse, sig, reply) == expected, reply


class Cited(dspy.Signature):
    """Answer from the documents, citing them."""

    documents: list[Document] = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()
    citations: Citations = dspy.OutputField()


CITATIONS = [
    json.dumps(
        [
            {
                "cited_text": "Paris",
                "document_index": 0,
                "start_char_index": 0,
                "end_char_index": 5,
            }
        ]
    ),
    '{"citations": []}',
    "none",
]


@pytest.mark.parametrize("text", CITATIONS)
def test_citations_format_and_parse_like_dspy(text: str) -> None:
    sig = Signature.from_dspy(Cited)
    inputs = {"documents": [Document(data="Paris is the capital.", title="Facts")], "question": "q"}
    replies = {
        (dspy.ChatAdapter, ChatAdapter): (
            f"[[ ## answer ## ]]\nParis\n\n[[ ## citations ## ]]\n{text}\n\n[[ ## completed ## ]]"
        ),
        (dspy.JSONAdapter, JSONAdapter): json.dumps({"answer": "Paris", "citations": text}),
        (dspy.XMLAdapter, XMLAdapter): f"<answer>Paris</answer><citations>{text}</citations>",
    }
    for (dspy_adapter, native_adapter), reply in replies.items():
        assert native_adapter().format(sig, [], inputs) == dspy_adapter().format(Cited, [], inputs)
        expected = outcome(dspy_adapter().parse, Cited, reply)
        assert outcome(native_adapter().parse, sig, reply) == expected, reply


def _replies(dspy_sig: type) -> list[str]:
    """Chat and JSON replies DSPy itself would render for the corpus demos, plus mutations."""
    replies: list[str] = []
    for demos in demos_for(dspy_sig).values():
        for demo in demos:
            if all(k in demo for k in dspy_sig.output_fields):
                chat = dspy.ChatAdapter().format_assistant_message_content(dspy_sig, demo)
                js = dspy.JSONAdapter().format_assistant_message_content(dspy_sig, demo)
                xml = dspy.XMLAdapter().format_assistant_message_content(dspy_sig, demo)
                replies += [chat, js, "Sure.\n" + chat, js + "\nDone.", chat.replace("\n\n", "\n")]
                replies += [xml, "Here:\n" + xml + "\nDone.", xml.replace("\n", "")]
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
            (dspy.XMLAdapter, XMLAdapter),
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
