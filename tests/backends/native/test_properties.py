"""Property tests: generated signatures and values format like DSPy; arbitrary replies never raise
anything but ParseError, and parse exactly like DSPy."""

from __future__ import annotations

import contextlib
from typing import Any

import dspy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dspex.backends.native import ChatAdapter, JSONAdapter, XMLAdapter, check_inputs
from dspex.errors import InputError, ParseError
from dspex.signature import Signature

from .corpus import outcome

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_NAMES = st.sampled_from(
    ["q", "text", "ctx", "answer", "score", "tags", "label", "n", "ok", "data"]
)
_TYPES = {
    "str": st.text(max_size=30),
    "int": st.integers(),
    "float": st.floats(allow_nan=False),
    "bool": st.booleans(),
    "list[str]": st.lists(st.text(max_size=8), max_size=3),
    "list[int]": st.lists(st.integers(), max_size=3),
    "dict[str, float]": st.dictionaries(st.text(max_size=5), st.floats(allow_nan=True), max_size=3),
    "Optional[str]": st.one_of(st.none(), st.text(max_size=10)),
    "int | None": st.one_of(st.none(), st.integers()),
    "Literal['a', 'b c', \"it's\"]": st.sampled_from(["a", "b c", "it's"]),
    "dspy.Image": st.sampled_from(
        [dspy.Image("https://example.com/a.png"), dspy.Image("data:image/png;base64,iVBORw0KGgo=")]
    ),
    "list[dspy.Audio]": st.lists(
        st.sampled_from([dspy.Audio(data="UklGRg==", audio_format="wav")]), max_size=2
    ),
    "Any": st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=6,
    ),
}


def _values(draw: st.DrawFn, names: list[str], types: dict[str, str]) -> dict[str, Any]:
    """Some of ``names`` (at random), with generated values of their types."""
    return {n: draw(_TYPES[types[n]]) for n in names if draw(st.integers(0, 4))}


@st.composite
def _typed_case(
    draw: st.DrawFn,
) -> tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, str], int]:
    """A signature's text, inputs and demos, with each field's type and the number of inputs."""
    names = draw(st.lists(_NAMES, min_size=2, max_size=5, unique=True))
    split = draw(st.integers(1, len(names) - 1))
    types = {n: draw(st.sampled_from(list(_TYPES))) for n in names}
    text = (
        ", ".join(f"{n}: {types[n]}" for n in names[:split])
        + " -> "
        + ", ".join(f"{n}: {types[n]}" for n in names[split:])
    )
    inputs = {
        n: draw(_TYPES[types[n]]) for n in names[:split] if draw(st.booleans()) or n == names[0]
    }
    demos = [_values(draw, names, types) for _ in range(draw(st.integers(0, 3)))]
    return text, inputs, demos, types, split


_case = _typed_case().map(lambda case: case[:3])
ADAPTERS = [
    (dspy.ChatAdapter, ChatAdapter),
    (dspy.JSONAdapter, JSONAdapter),
    (dspy.XMLAdapter, XMLAdapter),
]


_DESCRIPTIONS = st.dictionaries(
    _NAMES, st.one_of(st.text(max_size=25), st.sampled_from(["a\nb", "{x}", "  pad  "]))
)


@FAST
@given(_case, st.sampled_from(["", "Do the task.\n  Carefully."]), st.booleans(), _DESCRIPTIONS)
def test_generated_signatures_and_values_format_like_dspy(
    case: tuple[str, dict[str, Any], list[dict[str, Any]]],
    instructions: str,
    cot: bool,
    descriptions: dict[str, str],
) -> None:
    text, inputs, demos = case
    dspy_sig = dspy.Signature(text, instructions or None)
    descriptions = {k: v for k, v in descriptions.items() if k in dspy_sig.fields}
    for name, desc in descriptions.items():
        dspy_sig = dspy_sig.with_updated_fields(name, desc=desc)
    sig = Signature.parse(text, instructions or None, descriptions=descriptions or None)
    if cot:
        dspy_sig, sig = dspy.ChainOfThought(dspy_sig).predict.signature, sig.with_reasoning()
    for dspy_adapter, native_adapter in ADAPTERS:
        expected = outcome(dspy_adapter().format, dspy_sig, demos, inputs)
        assert outcome(native_adapter().format, sig, demos, inputs) == expected


_SIGNATURES = [
    "q -> answer",
    "q -> answer, score: float",
    "q -> n: int, ok: bool, tags: list[str]",
    "q -> label: Literal['pos', 'neg'], pick: Literal[1, 2]",
    "q -> maybe: str | None, count: int | None",
    "q -> data: dict[str, Any], pair: tuple[int, str]",
]
_HEADERS = ["answer", "score", "n", "ok", "tags", "label", "pick", "maybe", "count", "data", "pair"]
_PIECES = [
    *(f"[[ ## {name} ## ]]" for name in [*_HEADERS, "completed"]),
    "\n", "\n\n", " ", "  ", "{", "}", "[", "]", '"answer"', '"n"', ":", ",", "1", "2.5", "-3",
    "true", "None", "null", "pos", "'neg'", "Literal[", '"x"', "text", "```", "json", "\r",
    "\u2028", "{[1]: 2}", "Infinity",
    *(f"<{name}>" for name in _HEADERS), *(f"</{name}>" for name in _HEADERS),
    "<item>", "</item>", "<item/>", '<entry key="a b">', "</entry>", "&amp;", "&", "<", "/>",
]  # fmt: skip
_REPLIES = st.one_of(
    st.text(max_size=80), st.lists(st.sampled_from(_PIECES), max_size=25).map("".join)
)


@FAST
@given(st.sampled_from(_SIGNATURES), _REPLIES)
def test_arbitrary_replies_parse_like_dspy_and_raise_only_parse_errors(
    text: str, reply: str
) -> None:
    sig, dspy_sig = Signature.parse(text), dspy.Signature(text)
    for dspy_adapter, native_adapter in ADAPTERS:
        with contextlib.suppress(ParseError):  # anything else propagates and fails the test
            native_adapter().parse(sig, reply)
        expected = outcome(dspy_adapter().parse, dspy_sig, reply)
        assert outcome(native_adapter().parse, sig, reply) == expected


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.one_of(st.text(max_size=12), st.integers(), st.none()),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers())),
        max_size=6,
    )
    | st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.text(max_size=5)))
)
def test_input_validation_raises_only_input_errors(inputs: object) -> None:
    """Whatever a caller passes as inputs, the check answers with values or an InputError."""
    signature = Signature.parse("context, question: str, hint: str | None -> answer")
    try:
        values = check_inputs(signature, inputs)  # type: ignore[arg-type]
    except InputError:
        return
    assert set(values) <= {"context", "question", "hint"}
    assert {"context", "question"} <= set(values)


@st.composite
def _history_case(
    draw: st.DrawFn,
) -> tuple[str, int, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """A generated case, a position for a ``history`` input among the inputs, and turns: each
    some of the fields (inputs and outputs), sometimes with a key of no field."""
    text, inputs, demos, types, split = draw(_typed_case())
    turns = [
        {
            **_values(draw, list(types), types),
            **({"extra": draw(st.text(max_size=5))} if draw(st.booleans()) else {}),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    return text, draw(st.integers(0, split)), inputs, demos, turns


@FAST
@given(_history_case(), st.booleans(), st.booleans())
def test_generated_histories_format_like_dspy(
    case: tuple[str, int, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]],
    cot: bool,
    given_history: bool,
) -> None:
    text, position, inputs, demos, turns = case
    dspy_sig = dspy.Signature(text).insert(
        position, "history", dspy.InputField(), type_=dspy.History
    )
    sig = Signature.from_dspy(dspy_sig)
    if cot:
        dspy_sig, sig = dspy.ChainOfThought(dspy_sig).predict.signature, sig.with_reasoning()
    if given_history:
        inputs = {**inputs, "history": dspy.History(messages=turns)}
    for dspy_adapter, native_adapter in ADAPTERS:
        expected = outcome(dspy_adapter().format, dspy_sig, demos, inputs)
        assert outcome(native_adapter().format, sig, demos, inputs) == expected
