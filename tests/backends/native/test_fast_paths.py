"""The native fast paths against the slow paths they stand for, with DSPy 3.4.1 as the oracle.

- scalar fields (int / float / bool) read plain JSON numbers with int() / float() and skip
  pydantic for values of exactly the right type;
- lenient JSON skips json_repair when ``json.loads`` alone reads the text, or when nothing in
  the text starts a value for json_repair (prose, most code), and a text value skips
  ``ast.literal_eval`` when it cannot be a Python literal (prose, code starting with a name or
  a fence);
- JSONAdapter writes flat objects of scalars without json's (slow) indenting encoder;
- a field value that is a list or an object is written by json's C encoder, built once;
- a dspy.Type that keeps dspy.Type's or Code's serializer is written by its own format(), not
  pydantic's dump (an Image's text kept by value, as DSPy keeps its format()), and user
  content is split at the custom-type markers with str.find, payloads read by msgspec where
  it reads as json.loads does;
- ChatAdapter looks up exact header lines in a dict before trying the header regex;
- user messages are joined without DSPy's final strip where it cannot change anything.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any, ClassVar, Literal, Optional

import dspy
import json_repair
import pytest
from dspy.adapters.utils import format_field_value, parse_value, serialize_for_json
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

from dspex.backends.native import ChatAdapter, JSONAdapter
from dspex.backends.native._parsing import _candidate, loads_lenient, make_value_parser
from dspex.backends.native._values import expand_markers, format_value, json_object_text
from dspex.signature import Signature

from .corpus import outcome, typed

FAST = settings(max_examples=300, deadline=None)

NUMBER_TEXTS = [
    *["0", "-0", "0.0", "-0.0", "1", "-1", "42", "0.5", "0.95", "-3.25", "1e3", "1E3", "1e+3"],
    *["1e-3", "2.5e-3", "1e400", "-1e400", "1e-400", "4.9e-324", "0.1e1", "10", "007", "01"],
    *["1.", ".5", "+1", "-", "1e", "1.5e", "1e+", "--1", "1-", "0x10", "0o7", "0b1", "1_000"],
    *["1,5", "1 000", " 0.5 ", "0.5 ", " 0.5", "\t1\n", "nan", "NaN", "-NaN", "inf", "Infinity"],
    *["-Infinity", "infinity", "1" * 30, "1" * 30 + ".5", "9" * 400, "1" * 501, "1" * 502],
    *["1" * 700, "1" * 5000, "1" * 5000 + ".0", "0." + "1" * 5000],  # int()'s digit limit
    *["\u0661\u0662", "\uff11\uff12", "\u0663.\u0665", "\u00b2", "1\u0662", "1.\u0665"],
    *["1e\u0663", "-\u0661", "1\u0660", "\uff11.5", "1.5\u200b", "\u00a01"],  # non-ASCII
    *["True", "False", "true", "false", "TRUE", "yes", "no", "1.0", "2.0", "None", "null"],
    *["", " ", '"12"', "'12'", "[1]", "{}", "12 apples", "1/2", "½", "0.95\u2028", "1\x00"],
]
SCALAR_TYPES: list[Any] = [int, float, bool]


@pytest.mark.parametrize("annotation", SCALAR_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("text", NUMBER_TEXTS, ids=repr)
def test_scalar_values_parse_like_dspy(annotation: Any, text: str) -> None:
    parse = make_value_parser(annotation)
    assert outcome(parse, text) == outcome(parse_value, text, annotation)


@pytest.mark.parametrize("annotation", SCALAR_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize(
    "value",
    [0, -0.0, 1, 2**70, 10**400, 0.5, math.nan, math.inf, -math.inf, True, False, None, "1", []],
    ids=repr,
)
def test_scalar_json_values_parse_like_dspy(annotation: Any, value: Any) -> None:
    parse = make_value_parser(annotation)
    result = outcome(parse, value)
    assert result == outcome(parse_value, value, annotation)
    if result[0] == "ok" and isinstance(value, float) and value == 0:
        assert math.copysign(1, parse(value)) == math.copysign(1, parse_value(value, annotation))


@pytest.mark.parametrize("text", ["-0", "-0.0", "0.0", "-0e1"])
def test_negative_zero_keeps_its_sign_like_dspy(text: str) -> None:
    ours, theirs = make_value_parser(float)(text), parse_value(text, float)
    assert math.copysign(1, ours) == math.copysign(1, theirs)


@FAST
@given(
    st.one_of(
        st.from_regex(r"[-+]?[0-9]{0,4}(\.[0-9]{0,4})?([eE][-+]?[0-9]{0,3})?", fullmatch=True),
        st.from_regex(r"\s?-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,4})?\s?"),
        st.floats().map(repr),
        st.integers().map(str),
        st.text(alphabet="0123456789.eE+-_ nN\u0660\u0663\uff11", max_size=8),
    ),
    st.sampled_from(SCALAR_TYPES),
)
def test_generated_number_texts_parse_like_dspy(text: str, annotation: Any) -> None:
    assert outcome(make_value_parser(annotation), text) == outcome(parse_value, text, annotation)


@pytest.mark.parametrize(
    "annotation",
    [Optional[float], int | None, Literal[1, 2], list[float], dict[str, int], Any],  # noqa: UP045
    ids=repr,
)
@pytest.mark.parametrize("text", ["1", "2.5", "1e3", "nan", "None", "[1, 2]", '{"a": 1}', "x"])
def test_other_types_still_parse_like_dspy(annotation: Any, text: str) -> None:
    assert outcome(make_value_parser(annotation), text) == outcome(parse_value, text, annotation)


LENIENT_TEXTS = [
    *["", " ", "1", " 1", "1 ", "\ufeff1", "\ufeff{}", "nan", "NaN", "Infinity", '"x"', "'x'"],
    *['{"a": 1}', ' {"a": 1}', '{"a": 1} ', '{"a": 1}\n', '{"a": 1}x', '{"a": 1}{"b": 2}'],
    *['{"a": 1,}', "{'a': 1}", '{"a": [1, 2', "[1, 2]", "[1, 2] // c", "```json\n[1]\n```"],
    *['{"a": "\\u00e9\\ud83d\\ude80"}', '{"a": "tab\there"}', '{"a": 1, "a": 2}', "1" * 5000],
    *["[" * 150 + "]" * 150, "[" * 199 + "]" * 199, "[" * 200 + "]" * 200, "[" * 3000],
    *["{" * 300, "[" * 3000 + "]" * 3000, '{"a": ' + "[" * 250 + "]" * 250 + "}"],
    *["[" + ", ".join(["[1]"] * 300) + "]", '"' + "[" * 300 + '"', "true", "True", "null"],
    # prose: nothing in it starts a value for json_repair (or json.loads reads it whole)
    *["Floppy ears.", "It is the capital.", " true ", "\t-Infinity\n", " NaN", " 12 ", "12 a"],
    *["-", "...", "a, b", "1, 2", "x: 1, y: 2", "key: value", "a: {b}", "a:\n- b\n- c"],
    *["\\", "a\\nb", "é\u2028", "\u00a0", "1" * 5000 + " ", " " + "1" * 5000, "- 1e400"],
    # code: a "(" starts a value only with nothing but whitespace before it on its line
    *["print(2)", "```python\nprint(2)\n```", "def f(x):\n    return x", "f(a, 'b', \"c\")"],
    *["(1, 2)", " (1)", "x\n(1, 2)", "x\r  (1)", 'x\n\t("a")', "x (1)", "x\n y (1)", "()"],
    *["\u3000(1)", "x\u2028(1)", "x\x0c(1)", "# c\n(1)", "(1) # c", "a / b", "a // b", "/* c */"],
    *["/* c", "x = 'a'\n# note (1)\nprint(x)", "'a': 1", '"a": 1', "“a”: 1", "a: 'b'"],
    *["# c\n" * 100 + "x", "# c\nx\n" * 400, "a / b\n" * 400, "/" * 3000, "x = 1  # one"],
]


_CODE_TOKENS = [
    *["print", "x", "é", "set", "None", "not", "b", "rb", "f", " ", "  ", "\t", "\n", "\r", "\x0c"],
    *["(", ")", "'", '"', "“", "”", "`", "```", "#", "/", "*", ":", ",", "=", "1", "-", ".", "\\"],
    *["[", "]", "{", "}", "\u3000", "\u2028", "\x00"],
]


@pytest.mark.parametrize("text", LENIENT_TEXTS, ids=lambda s: repr(s[:30]))
def test_lenient_json_equals_json_repair(text: str) -> None:
    assert outcome(loads_lenient, text) == outcome(json_repair.loads, text)


@FAST
@given(
    st.one_of(
        st.text(max_size=40),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=8,
        ).map(json.dumps),
        st.lists(st.sampled_from(list('{}[]",: 1a\n')), max_size=20).map("".join),
        # prose, and texts of any characters but those that start a value for json_repair
        st.lists(
            st.sampled_from(["It", "is", "the", "true", "null", "NaN", "-", "1", "2.5", "e"])
            | st.sampled_from([" ", "  ", "\n", ".", ",", ":", ";", "!", "?", "-1", "\\"]),
            max_size=12,
        ).map("".join),
        st.text(st.characters(blacklist_characters="{}[]()#/\"'`\u201c\u201d\u201e\u2018\u2019")),
        st.text(st.characters(blacklist_characters="{}[]")),
        # code and prose with quotes, comments and parentheses in and at the start of lines
        st.lists(st.sampled_from(_CODE_TOKENS), max_size=16).map("".join),
    )
)
def test_generated_texts_load_like_json_repair(text: str) -> None:
    assert outcome(loads_lenient, text) == outcome(json_repair.loads, text)


def dspy_candidate(text: str) -> Any:
    """What DSPy 3.4.1's ``parse_value`` validates for a text value (its own steps)."""
    candidate = json_repair.loads(text)
    if candidate == "" and text != "":
        try:
            candidate = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            candidate = text
    return candidate


CANDIDATE_TEXTS = [
    *["Floppy ears.", "It is the capital.", "a, b", "x = 1", "a if b else c", "not a", "-a"],
    *["True", "a True", "None", "Nonesuch", "...", "a...", "Ellipsis", "1", "1j", "0x1f"],
    *["-" * 1400 + "a", "-" * 1600 + "a", "~" * 3000 + "a", "a" + "+a" * 800, "not " * 2000],
    *["\U0001d413\U0001d42b\U0001d42e\U0001d41e", "caf\u00e9", "a\\\nb", "a\x00b", "", " ", "\t"],
    *["lambda: a", "a: b", "a @ b % c", "a; b", "yield a", "await a", "*a", "a := b", "a,"],
    # code: a leading name (not a keyword, not set) or a fence is no literal
    *["print(2)", "```python\nprint(2)\n```", " \t```x", "`", "`" + "(" * 300, "\tprint(1)"],
    *["set()", "set(), 1", "sett()", "b'x'", "rb'x'", 'Rb"x"', "f'x'", "u'x'", "br''", "x = 1"],
    *["None", "None, 1", "True or x", "not x", "lambda: 1", "await x", "pr\u00e9nom(1)", "Nonė"],
    *["\uff2e\uff4f\uff4e\uff45", "a" + "+a" * 300, "a" + "-" * 1400 + "1", "x, 1", "x\n(1)"],
    *["print('a'\n'b')", "a\x00", "a\ud800", "print(2)\nprint(3)", "_", "match", "x.y[1]"],
    # JSON words json.loads reads (prose otherwise)
    *["true", " null ", "NaN", "-Infinity", "Infinity\n", "nan", "true false", "\ttrue"],
]


@pytest.mark.parametrize("text", CANDIDATE_TEXTS, ids=lambda s: repr(s[:30]))
def test_text_values_become_what_dspy_validates(text: str) -> None:
    assert outcome(_candidate, text) == outcome(dspy_candidate, text)


@FAST
@given(
    st.one_of(
        st.lists(
            st.sampled_from(["a", "Floppy", "ears", "not", "if", "else", "lambda", "Tru", "e"])
            | st.sampled_from(["None", "Non", "Fals", "..", ".", " ", "\n", "\t", ",", ":", ";"])
            | st.sampled_from(["-", "+", "~", "*", "**", "=", "<", "@", "%", "&", "|", "^", "!"])
            | st.sampled_from(["\\", "1", "'", "(", ")", "[", "é", "\x00", "j", "_"])
            | st.sampled_from(["print", "set", "b", "rb", "f", "`", "```", "\u00e9", "\uff2e"]),
            max_size=16,
        ).map("".join),
        st.text(st.characters(max_codepoint=127), max_size=30),
        st.lists(st.sampled_from(_CODE_TOKENS), max_size=16).map("".join),
    )
)
def test_generated_text_values_become_what_dspy_validates(text: str) -> None:
    assert outcome(_candidate, text) == outcome(dspy_candidate, text)


JAVA = dspy.Code["java"]  # (each subscript makes a new class)
CODE_REPLIES = [
    *["print(2)", "```python\nprint(2)\n```", "```\nx = [1]\n```", "```print(1)```", "x = 1"],
    *['{"code": "print(1)"}', '"print(1)"', "'print(1)'", "[1, 2]", "42", "", "```", "set()"],
    *["def f(x):\n    return {'a': x}", "# comment\nprint(1)", "b'x'", "(print(1))", "None"],
]


@pytest.mark.parametrize("annotation", [dspy.Code, JAVA], ids=["Code", "Code_java"])
@pytest.mark.parametrize("text", CODE_REPLIES, ids=repr)
def test_code_values_parse_like_dspy(annotation: Any, text: str) -> None:
    parse = make_value_parser(annotation)
    assert outcome(parse, text) == outcome(parse_value, text, annotation)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # nan and inf included: DSPy's serialize_for_json turns them into null
    st.text(),
)


def _dspy_json_object(value: dict[str, Any]) -> str:
    return json.dumps(serialize_for_json(value), indent=2, ensure_ascii=False)


@FAST
@given(
    st.dictionaries(
        st.text(),
        _SCALARS | st.lists(_SCALARS, max_size=2) | st.dictionaries(st.text(), _SCALARS),
        max_size=4,
    )
)
def test_json_objects_are_written_like_dspy(value: dict[str, Any]) -> None:
    assert json_object_text(value) == _dspy_json_object(value)


_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=6)  # lone surrogates too
_NESTED = st.recursive(
    _SCALARS | _ANY_TEXT,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=2).map(tuple)
        | st.dictionaries(st.one_of(_ANY_TEXT, st.integers(), st.booleans()), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(_ANY_TEXT, _NESTED, max_size=4))
def test_nested_json_objects_are_written_like_dspy(value: dict[str, Any]) -> None:
    # nested values go through msgspec when they hold no float, else through json
    assert json_object_text(value) == _dspy_json_object(value)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": 1, 2: "non-str key"},
        {"a": True, "b": False, "c": None, "d": 0.1, "e": 10**30, "f": -0.0},
        {"quote": 'say "hi"\\', "ctrl": "\x00\x1f\t\n", "uni": "é 日本 🚀 \u2028 \ud800"},
        {"inf": math.inf, "nan": math.nan, "ok": 1.5},
        {"nested": {"a": [1, 2]}, "list": []},
        {"deep": {"x": [{"y": (1, "two", None, True)}], "big": 10**40}, "empty": {}},
        {"calls": {"tool_calls": [{"name": "s", "args": {"q": "\ud800"}}]}},
        {"\ud800": None},  # a key pydantic cannot dump: DSPy writes str(value)
        {"a": {"\ud800": 1}},
        {"floats": {"a": [1e16, 1e-7, 0.5]}, "k": {1: "int key", False: "bool key"}},
    ],
    ids=repr,
)
def test_json_object_edge_cases_are_written_like_dspy(value: dict[Any, Any]) -> None:
    assert json_object_text(value) == _dspy_json_object(value)


@settings(max_examples=1000, deadline=None)
@given(_NESTED | st.dictionaries(_ANY_TEXT, _NESTED, max_size=4))
def test_field_values_are_written_like_dspy(value: Any) -> None:
    # lists and objects (tuples, floats, non-str keys, lone surrogates) through the C encoder
    assert format_value(value, False) == format_field_value(FieldInfo(annotation=Any), value)


@pytest.mark.parametrize(
    "value",
    [[math.nan, math.inf, -0.0, 1e16, 1e-7], {"k": [{"deep": (1, None)}]}, [10**40], ["é \u2028"]],
    ids=repr,
)
def test_field_value_edge_cases_are_written_like_dspy(value: Any) -> None:
    assert format_value(value, False) == format_field_value(FieldInfo(annotation=Any), value)


QA_TEXT = "context, question -> answer, confidence: float"
CHAT_REPLIES = [
    "[[ ## answer ## ]]\nA\n\n[[ ## confidence ## ]]\n0.5\n\n[[ ## completed ## ]]\n",
    "[[ ## answer ## ]]\r\nA\r\n\r\n[[ ## confidence ## ]]\r\n0.5\r\n[[ ## completed ## ]]",
    "[[ ## answer ## ]]\rA\r[[ ## confidence ## ]]\r1e3",
    "[[ ## answer ## ]]\x0bA\x0c[[ ## confidence ## ]]\x1c0.5\x1d\x1e\x85\u2028\u2029",
    "[[ ## answer ## ]]  \nA\n[[ ## confidence ## ]]\t\n0.5",
    "\t[[ ## answer ## ]]\nA\n\xa0[[ ## confidence ## ]]\n0.5",
    "\u3000[[ ## answer ## ]] A on the line\n[[ ## confidence ## ]] 0.5 trailing",
    "[[ ## answer ## ]] [[ ## confidence ## ]] 0.5",
    "[[ ## answer ## ]]\nA [[ ## confidence ## ]] 2\n[[ ## confidence ## ]]\n3",
    "[[ ## answer ## ]][[ ## confidence ## ]]\n0.5",
    "x [[ ## answer ## ]]\nA\n[[ ## confidence ## ]]\n0.5",
    "[[ ## answer ## ]]\nA\n[[ ## answer ## ]]\nB\n[[ ## confidence ## ]]\n 0.5 ",
    "[[ ## confidence ## ]]\nnan\n[[ ## answer ## ]]\n[[ ## completed ## ]]",
    "[[ ## confidence ## ]]\n1_000\n[[ ## answer ## ]]\nA",
    "[[ ## confidence ## ]]\n0x10\n[[ ## answer ## ]]\nA",
    "[[ ## confidence ## ]]\n\u0661\u0662\n[[ ## answer ## ]]\nA",
    "[[ ## confidence ## ]]\n" + "9" * 700 + "\n[[ ## answer ## ]]\nA",
    "[[ ## confidence ## ]]\nTrue\n[[ ## answer ## ]]\nA",
    "[[ ## confidence ## ]]\n\n[[ ## answer ## ]]\nA",
    "[[ ## answer ## ]]\nA\n[[ ## Confidence ## ]]\n0.5",
    "[[ ## answer ## ]]\nA\n[[ ## confidence ## ]]\n0.5\n[[ ## completed ## ]]\n[[ ## answer ## ]]",
    "[[ ## answer ## ]]\nA\n[[ ## confidence ## ]] \n0.5",
    "[[ ## answer ## ]]\nA\n[[ ## confidence ##  ]]\n0.5",
]


@pytest.mark.parametrize("reply", CHAT_REPLIES, ids=repr)
def test_chat_replies_parse_like_dspy(reply: str) -> None:
    expected = outcome(dspy.ChatAdapter().parse, dspy.Signature(QA_TEXT), reply)
    assert outcome(ChatAdapter().parse, Signature.parse(QA_TEXT), reply) == expected


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("q -> completed", "[[ ## completed ## ]]\ndone\n[[ ## completed ## ]]\nagain"),
        ("q -> ünïcode", "[[ ## ünïcode ## ]]\nvalue"),
        ("q -> a, b", "[[ ## b ## ]]\nB\n[[ ## a ## ]]\nA"),  # reply order != signature order
        ("q -> n: int, x: float", "[[ ## n ## ]]\n42\n[[ ## x ## ]]\n42"),
        ("q -> n: int, x: float", "[[ ## n ## ]]\n42.0\n[[ ## x ## ]]\n-0"),
        ("q -> n: int, x: float", "[[ ## n ## ]]\n-0\n[[ ## x ## ]]\n1E-2"),
    ],
    ids=repr,
)
def test_more_chat_replies_parse_like_dspy(text: str, reply: str) -> None:
    expected = outcome(dspy.ChatAdapter().parse, dspy.Signature(text), reply)
    assert outcome(ChatAdapter().parse, Signature.parse(text), reply) == expected


JSON_REPLIES = [
    '{"answer": "A", "confidence": 0.5}',
    '  {"answer": "A", "confidence": 0.5}  ',
    '\ufeff{"answer": "A", "confidence": 0.5}',
    '{"answer": "A", "confidence": "0.5"}',
    '{"answer": "A", "confidence": " 0.5 "}',
    '{"answer": "A", "confidence": "1e3"}',
    '{"answer": "A", "confidence": "nan"}',
    '{"answer": "A", "confidence": NaN}',
    '{"answer": "A", "confidence": -Infinity}',
    '{"answer": "A", "confidence": 1}',
    '{"answer": "A", "confidence": true}',
    '{"answer": "A", "confidence": "1_000"}',
    '{"answer": "A", "confidence": ' + "9" * 5000 + "}",
    '{"answer": 12, "confidence": 0.5, "answer": "B"}',
    '{"confidence": 0.5, "answer": ["x"]}',
    '{"answer": "A", "confidence": 0.5} and more',
    'Here: {"answer": "A", "confidence": 0.5}',
    '{"answer": "' + "[" * 300 + '", "confidence": 0.5}',
    '{"answer": ' + "[" * 250 + "]" * 250 + ', "confidence": 0.5}',
]


@pytest.mark.parametrize("reply", JSON_REPLIES, ids=lambda s: repr(s[:40]))
def test_json_replies_parse_like_dspy(reply: str) -> None:
    expected = outcome(dspy.JSONAdapter().parse, dspy.Signature(QA_TEXT), reply)
    assert outcome(JSONAdapter().parse, Signature.parse(QA_TEXT), reply) == expected


@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
@pytest.mark.parametrize(
    ("demos", "inputs"),
    [
        ([], {}),
        ([], {"question": "only the second input"}),
        ([{"context": "", "question": "", "answer": "", "confidence": 0.0}], {"context": ""}),
        (
            [{"context": "  c  \n", "question": "q \n\n", "answer": " a ", "confidence": -0.0}],
            {"context": " x ", "question": "y\n\n"},
        ),
        (
            [{"context": "c", "question": "q", "answer": "a", "confidence": math.inf}],
            {"context": 1, "question": None},
        ),
        ([{"context": "c", "answer": "a"}, {"question": "q", "confidence": 1}], {}),
        ([{"context": "c", "question": "q", "answer": {"k": [1]}, "confidence": True}], {}),
        ([{"context": "c", "question": "q", "answer": 'é"\\\n🚀', "confidence": 1e300}], {}),
    ],
    ids=repr,
)
def test_messages_match_dspy_at_the_join_edges(
    adapter: str, demos: list[dict[str, Any]], inputs: dict[str, Any]
) -> None:
    dspy_adapter, native = (
        (dspy.ChatAdapter(), ChatAdapter())
        if adapter == "chat"
        else (dspy.JSONAdapter(), JSONAdapter())
    )
    expected = dspy_adapter.format(dspy.Signature(QA_TEXT), demos, inputs)
    assert native.format(Signature.parse(QA_TEXT), demos, inputs) == expected


def test_typed_comparison_sees_float_types() -> None:
    # the oracle helper compares types too: 1 and 1.0 differ, nan equals nan
    assert typed(1) != typed(1.0)
    assert typed(math.nan) == typed(math.nan)


class Shout(dspy.Type):
    """A user's type that formats as text."""

    text: str

    def format(self) -> str:
        return self.text.upper()


class Parts(dspy.Type):
    """A user's type that formats as content parts (non-ASCII, nested, a float)."""

    items: list[Any]

    def format(self) -> list[Any]:
        return self.items


class AsMapping(dspy.Type):
    """A user's type whose format() returns neither text nor parts."""

    def format(self) -> Any:
        return {"k": (1, 2.5)}


class Broken(dspy.Type):
    """A user's type whose format() fails."""

    def format(self) -> str:
        raise ValueError("no format")


class ListedCode(dspy.Code):
    """Code whose format() returns a list: pydantic dumps what Code's serializer returns."""

    def format(self) -> Any:
        return [self.code]


class BrokenCode(dspy.Code):
    def format(self) -> str:
        raise ValueError("no format")


class Tinted(dspy.Image):
    """An Image whose format() DSPy does not cache (nor does native keep its text)."""

    calls: ClassVar[int] = 0

    def format(self) -> Any:
        Tinted.calls += 1
        return [{"type": "image_url", "image_url": {"url": self.url + "#tint"}}]


def _mark(payload: str) -> str:
    return f"<<CUSTOM-TYPE-START-IDENTIFIER>>{payload}<<CUSTOM-TYPE-END-IDENTIFIER>>"


DSPY_TYPE_VALUES = [
    dspy.Image("https://example.com/cat.png"),
    dspy.Image("data:image/png;base64,iVBORw0KGgo="),
    dspy.Audio(data="UklGRg==", audio_format="wav"),
    dspy.File(file_id="file-1"),
    dspy.Reasoning(content="Whiskers."),
    dspy.Tool(lambda query: query, name="search", desc="Search."),
    dspy.Code(code="print(1)"),
    JAVA(code="```java\nint x;\n```"),
    ListedCode(code="print(1)"),
    BrokenCode(code="print(1)"),
    Tinted("https://example.com/cat.png"),
    dspy.ToolCalls.from_dict_list([{"name": "search", "args": {"query": "é"}}]),
    Shout(text="hi"),
    Parts(items=[{"type": "text", "text": "日本 \u2028"}, {"n": [1, 2.5, None]}]),
    Parts(items=[]),
    Parts(items=[b"bytes"]),  # json.dumps fails: DSPy writes str(value)
    Parts(items=[{"type": "text", "text": "lone \ud800 surrogate"}]),
    AsMapping(),
    Broken(),
]


@pytest.mark.parametrize("value", DSPY_TYPE_VALUES, ids=lambda v: type(v).__name__)
def test_dspy_type_values_serialize_like_dspy(value: Any) -> None:
    # dspy.Type's own serializer is run directly (format(), then text or marked parts); types
    # with a serializer of their own (Code, ToolCalls) and other returns go through pydantic
    assert outcome(format_value, value, False) == outcome(
        format_field_value, FieldInfo(annotation=Any), value
    )


def test_image_texts_are_kept_by_value_as_dspy_keeps_its_format() -> None:
    # equal images (other objects) write the same text, also past the kept texts' bound
    urls = [f"https://example.com/{i}.png" for i in range(80)]
    for url in urls + urls:
        image = dspy.Image(url)
        expected = format_field_value(FieldInfo(annotation=Any), image)
        assert format_value(dspy.Image(url), False) == expected
    # a subclass with a format() of its own is formatted on every call, as DSPy does
    before = Tinted.calls
    for _ in range(3):
        format_value(Tinted("https://example.com/cat.png"), False)
    assert Tinted.calls == before + 3


def _dspy_split(content: str) -> Any:
    from dspy.adapters.types.base_type import split_message_content_for_custom_types

    return split_message_content_for_custom_types([{"role": "user", "content": content}])[0][
        "content"
    ]


_PAYLOADS = [
    '[{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]',
    '[{"type": "text", "text": "日本"}]',
    "[NaN, 1e400]",  # json.loads reads these, msgspec does not
    '["\\ud800"]',
    '[{"type": "text", "text": "\ud800"}]',  # a lone surrogate itself: msgspec cannot encode it
    "[]",
    '""',
    "{}",
    '{"a": 1}',  # a dict: DSPy appends its keys
    '"ab"',  # a string: DSPy appends its characters
    "1",  # not iterable: DSPy fails
    "0",
    "not json",
    '\\"[1]\\"',  # doubly quoted
    "[1, 2",  # json_repair's
    "  [1]  ",
    "",
]


@pytest.mark.parametrize("payload", _PAYLOADS, ids=repr)
@pytest.mark.parametrize(
    "shape",
    [
        "{}",
        "before {} after",
        "{}{}",
        "a {} b {} c",
        "{} <<CUSTOM-TYPE-START-IDENTIFIER>> dangling",
    ],
)
def test_marked_user_content_splits_like_dspy(shape: str, payload: str) -> None:
    content = shape.replace("{}", _mark(payload))
    assert outcome(expand_markers, content) == outcome(_dspy_split, content)


@pytest.mark.parametrize(
    "content",
    [
        "no markers",
        "<<CUSTOM-TYPE-START-IDENTIFIER>> no end",  # DSPy leaves the text as it is
        "<<CUSTOM-TYPE-END-IDENTIFIER>> end first <<CUSTOM-TYPE-START-IDENTIFIER>>",
        "<<CUSTOM-TYPE-START-IDENTIFIER>><<CUSTOM-TYPE-START-IDENTIFIER>>[1]"
        "<<CUSTOM-TYPE-END-IDENTIFIER>><<CUSTOM-TYPE-END-IDENTIFIER>>",
        "<<CUSTOM-TYPE-START-IDENTIFIER>>\n[1]\n<<CUSTOM-TYPE-END-IDENTIFIER>>\n",
    ],
    ids=repr,
)
def test_marker_edge_cases_split_like_dspy(content: str) -> None:
    assert outcome(expand_markers, content) == outcome(_dspy_split, content)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _fails_deep(fn: Any, content: str) -> bool:
    """Whether ``fn(content)`` hits the recursion limit (values this deep cannot be compared)."""
    try:
        fn(content)
    except RecursionError:
        return True
    return False


def test_deep_marked_payloads_split_like_dspy() -> None:
    # near the recursion limit json.loads fails a few levels before msgspec would: around the
    # depth at which it fails from here, and around the depth the fast path stops at
    limit = next(d for d in range(1, 10_000) if _fails_deep(json.loads, _nested(d)))
    for depth in (*range(limit - 12, limit + 12), *range(95, 105)):
        content = _mark(_nested(depth))
        assert _fails_deep(expand_markers, content) == _fails_deep(_dspy_split, content), depth


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(_PAYLOADS).map(_mark)
        | st.sampled_from(["<<CUSTOM-TYPE-START-IDENTIFIER>>", "<<CUSTOM-TYPE-END-IDENTIFIER>>"])
        | st.text(max_size=8),
        max_size=6,
    ).map("".join)
)
def test_generated_marked_contents_split_like_dspy(content: str) -> None:
    assert outcome(expand_markers, content) == outcome(_dspy_split, content)
