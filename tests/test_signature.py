"""dspex.signature: DSPy 3.4.1's string grammar and acceptance rules, round trips, positions."""

from __future__ import annotations

import datetime
import keyword
import pickle
import subprocess
import sys
import typing
import warnings
from typing import Any

import dspy
import pydantic
import pytest
from dspy.signatures.signature import SignatureMeta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dspex._signature import _names
from dspex.errors import SignatureError
from dspex.signature import Field, Signature, SignatureWarning, ensure_signature, infer_prefix

from .backends.native.corpus import CLASS_SIGNATURES, STRING_SIGNATURES, Point, Rich

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _dspy(text: str, instructions: str | None = None) -> type:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dspy.Signature(text, instructions)  # type: ignore[no-any-return]


def _ours(text: str, instructions: str | None = None) -> Signature:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Signature.parse(text, instructions)


def _extras(cls: type) -> dict[str, Any]:
    return {k: (v.annotation, v.json_schema_extra, v.default) for k, v in cls.fields.items()}  # type: ignore[attr-defined]


def test_importing_dspex_does_not_import_dspy_or_litellm() -> None:
    code = (
        "import sys, dspex, dspex.signature, dspex.backends.native\n"
        "from dspex.signature import Signature\n"
        "from dspex.backends.native import ChatAdapter\n"
        "sig = Signature.parse('context, question -> answer, score: float')\n"
        "ChatAdapter().format(sig, [], {'context': 'c', 'question': 'q'})\n"
        "bad = [m for m in ('dspy', 'litellm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- accepted signatures: same fields, types, prefixes, descriptions, instructions as DSPy --------

VALID = [
    *[t for t, _ in STRING_SIGNATURES],
    "a, a -> b",
    "a: int, a: str -> b",
    "a=1 -> b",
    "a: int = 3 -> b",
    "*a, b -> c",
    "a, *, b -> c",
    "a, /, b -> c",
    "**kw -> b",
    "a: None -> b",
    "a: NoneType -> b: NoneType",
    "a ->",
    "->",
    "a,\n b,\tc -> d",
    "a,\r\nb -> c",
    "ﬁeld -> out",
    "match, self, print -> case",
    "schema -> json",
    "a -> model_validate_x",
    "a: Annotated[int, 'meta'] -> b: Annotated[str, Field(default='x')]",
    "a: Annotated[int, Field(default=3, ge=1)] -> c: Annotated[list, Field(default_factory=list)]",
    "a: datetime.date, b: typing.List[int] -> c: Tuple[int, ...]",
    "a: list[int, str] -> b",
    "a: Union[int] -> b: Optional[Optional[int]]",
    "a: int | str | None -> b: None | int",
    "a: Literal[int] -> b",
    "a: dspy.Image -> b",
    "a): pass\ndef g(b -> c",
]


@pytest.mark.parametrize("text", VALID)
def test_accepted_signatures_match_dspy(text: str) -> None:
    expected = Signature.from_dspy(_dspy(text))
    ours = _ours(text)
    assert ours == expected
    assert ours.instructions == expected.instructions
    assert [(f.prefix, f.desc, f.type_undefined) for f in ours.fields.values()] == [
        (f.prefix, f.desc, f.type_undefined) for f in expected.fields.values()
    ]


@pytest.mark.parametrize(("text", "instructions"), STRING_SIGNATURES)
def test_instructions_match_dspy(text: str, instructions: str | None) -> None:
    assert _ours(text, instructions).instructions == _dspy(text, instructions).instructions


def test_default_instructions_and_prefixes() -> None:
    sig = Signature.parse("question -> answer")
    assert sig.instructions == "Given the fields `question`, produce the fields `answer`."
    assert Signature.parse("-> a").instructions == "Given the fields , produce the fields `a`."
    assert Signature.parse("q -> a", "").instructions == sig.instructions.replace(
        "question", "q"
    ).replace("answer", "a")  # DSPy: empty instructions mean the default ones
    assert [
        infer_prefix(n) for n in ("camelCaseText", "snake_case", "text2number", "HTMLParser")
    ] == [
        "Camel Case Text",
        "Snake Case",
        "Text 2 Number",
        "HTML Parser",
    ]
    f = sig.fields["answer"]
    assert (f.desc, f.prefix, f.description, f.type_undefined) == ("${answer}", "Answer:", "", None)
    assert sig.fields["question"].type_undefined is True


def test_descriptions_keyword() -> None:
    sig = Signature.parse("context, question -> answer", descriptions={"answer": "a short answer"})
    assert sig.fields["answer"].description == "a short answer"
    with pytest.raises(SignatureError, match="unknown fields: nope"):
        Signature.parse("a -> b", descriptions={"nope": "x"})


# -- rejected signatures: SignatureError naming the problem and its position --------------------

INVALID: list[tuple[str, int, str]] = [
    ("question answer", 15, "exactly one '->'"),
    ("a -> b -> c", 7, "exactly one '->'"),
    ("a -> a", 5, "both an input and an output"),
    ("ﬁeld -> field", 8, "both an input and an output"),
    ("class -> b", 0, "keyword"),
    ("a -> b, def", 8, "keyword"),
    ("a, b c -> d", 5, "invalid syntax"),
    ("q -> é é", 7, "invalid syntax"),
    ("x, y: int = -> z", 10, "expected default value"),
    ("a # comment -> b", 2, "comment"),
    ("a\x00 -> b", 1, "null bytes"),
    ("instructions -> b", 0, "dspy.Signature.instructions"),
    ("a -> signature", 5, "dspy.Signature.signature"),
    ("x, fields -> y", 3, "fields"),
    ("a -> input_fields, output_fields", 5, "input_fields"),
    ("a -> model_config", 5, "pydantic.BaseModel.model_config"),
    ("model_validate -> b", 0, "model_validate"),
    ("_a -> b", 0, "underscore"),
    ("a -> __b__", 5, "underscore"),
    ("a: foo.bar -> b", 3, "unknown name 'foo'"),
    ("frage, 答え: Foo -> b", 11, "unknown name 'Foo'"),
    ("a,\n  b: nope -> c", 8, "unknown name 'nope'"),
    ("a,\r\n b: nope -> c", 8, "unknown name 'nope'"),
    ("a: os.nonexistent_attr -> b", 3, "unknown attribute"),
    ("a: 'str' -> b", 3, "not a type"),
    ("a: 3 -> b", 3, "not a type"),
    ("a: (int, str) -> b", 3, "not a type"),
    ("a: Callable -> b", 3, "not a type"),
    ("a: List -> b", 3, "not a type"),
    ("a: typing -> b", 3, "not a type"),
    ("a -> b: Field(description='x')", 8, "not a type"),
    ("a -> b: Optional[int, str]", 8, "Optional must have exactly one"),
    ("a: str[int] -> b", 3, "not subscriptable"),
    ("a: dict[str] -> b", 3, "two type arguments"),
    ("a: [int] -> b", 3, "unsupported syntax"),
    ("a: lambda: 1 -> b", 3, "unsupported syntax"),
    ("a: -1 -> b", 3, "unsupported syntax"),
    ("a: Literal -> b", 3, "pydantic cannot use"),
    ("a: list[1] -> b", 3, "pydantic cannot use"),
    ("a: socket.socket -> b", 3, "pydantic cannot use"),
    ("a: int, b: list[Field(description='x')] -> c", 11, "pydantic cannot use"),
    ("a: Union[()] -> b", 3, "Union of no types"),
    ("a: os.environ['HOME'] -> b", 3, ""),
    ("a: " + "list[" * 400 + "int" + "]" * 400 + " -> b", 1002, "too many nested"),
]


@pytest.mark.parametrize(("text", "position", "fragment"), INVALID)
def test_rejected_signatures_raise_signature_error_with_position(
    text: str, position: int, fragment: str
) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - DSPy raises assorted bare exceptions
        _dspy(text)
    with pytest.raises(SignatureError) as info:
        _ours(text)
    assert info.value.position == position, str(info.value)
    assert info.value.signature == text
    assert fragment in str(info.value)
    assert f"at position {position}" in str(info.value)


def test_non_string_inputs_are_signature_errors() -> None:
    with pytest.raises(SignatureError, match="must be a str"):
        Signature.parse(42)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="instructions must be a str"):
        Signature.parse("a -> b", 3)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="expected a dspex Signature"):
        ensure_signature(3.5)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match=r"expected a dspy\.Signature class"):
        Signature.from_dspy(int)


# -- warnings where DSPy silently accepts a likely mistake --------------------------------------

WARNED: list[tuple[str, str, int]] = [
    ("a, a -> b", "'a' is repeated", 3),
    ("a -> b, b", "'b' is repeated", 8),
    ("a=1 -> b", "default value", 2),
    ("*a, b -> c", "'*a' is silently dropped", 1),
    ("a, *, b -> c", "'b' after '*'", 6),
    ("a, /, b -> c", "'a' before '/'", 0),
    ("**kw -> b", "'**kw'", 2),
    ("a: None -> b", "annotated None", 3),
    ("a ->", "no output fields", 4),
    ("schema -> b", "shadows", 0),
    ("a -> model_validate_x", "protected namespace", 5),
    ("a): pass\ndef g(b -> c", "text after", 9),
]


@pytest.mark.parametrize(("text", "fragment", "position"), WARNED)
def test_likely_mistakes_warn_with_position(text: str, fragment: str, position: int) -> None:
    Signature.parse.__func__  # noqa: B018 - the cache must not swallow the warning on a second parse
    for _ in range(2):
        with pytest.warns(SignatureWarning) as record:
            sig = Signature.parse(text)
        messages = [str(w.message) for w in record]
        assert any(fragment in m and f"at position {position} " in m for m in messages), messages
    assert sig == Signature.from_dspy(_dspy(text))


def test_repeated_field_keeps_first_position_and_last_type() -> None:
    sig = _ours("a: int, b, a: str -> c")
    assert [(f.name, f.annotation) for f in sig.inputs] == [("a", str), ("b", str)]


def test_reserved_name_sets_match_installed_dspy() -> None:
    """Re-derive the name sets from DSPy itself so a DSPy upgrade cannot drift silently."""
    candidates = set(dir(dspy.Signature)) | set(dir(SignatureMeta)) | set(dir(pydantic.BaseModel))
    names = sorted(
        n
        for n in candidates
        if n.isidentifier() and not keyword.iskeyword(n) and not n.startswith("_")
    )
    rejected, warned = set(), set()
    for name in names:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                dspy.Signature(f"{name} -> zz")
            except Exception:
                rejected.add(name)
                continue
        if caught:
            warned.add(name)
    assert rejected == _names.DSPY_PROPERTIES | _names.PYDANTIC_REJECTED
    assert (
        warned
        == _names.SHADOWING
        | {n for n in names if n.startswith(_names.PROTECTED_PREFIXES)} - rejected
    )


# -- round trips with dspy.Signature ------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASS_SIGNATURES + [_dspy(t, i) for t, i in STRING_SIGNATURES])
def test_round_trip_through_dspy_is_lossless(cls: type) -> None:
    sig = Signature.from_dspy(cls)
    back = sig.to_dspy()
    assert back.instructions == cls.instructions  # type: ignore[attr-defined]
    assert back.equals(cls)  # type: ignore[attr-defined]
    assert _extras(back) == _extras(cls)
    assert Signature.from_dspy(back) == sig
    assert list(back.input_fields) == list(cls.input_fields)  # type: ignore[attr-defined]
    assert list(back.output_fields) == list(cls.output_fields)  # type: ignore[attr-defined]


@pytest.mark.parametrize("instructions", ["", "  x\n    y", "\n  a\n    b", "a\n\tb", "line\n\n\n"])
def test_round_trip_keeps_awkward_instructions(instructions: str) -> None:
    sig = Signature([Field.input("a")], [Field.output("b")], instructions)
    assert sig.to_dspy().instructions == sig.instructions  # type: ignore[attr-defined]
    assert Signature.from_dspy(sig.to_dspy()) == sig
    # derived signatures re-clean already-cleaned instructions, exactly like DSPy
    cls = sig.to_dspy()
    assert sig.with_reasoning() == Signature.from_dspy(dspy.ChainOfThought(cls).predict.signature)
    assert sig.delete("zz") == Signature.from_dspy(cls.delete("zz"))  # type: ignore[attr-defined]


def test_class_signature_details_survive() -> None:
    sig = Signature.from_dspy(Rich)
    score = sig.fields["score"]
    assert score.constraints == "greater than or equal to: 0, less than or equal to: 1"
    assert sig.fields["note"].default == "n/a"
    assert not sig.fields["note"].required
    assert sig.fields["text"].description == "the text,\nover two lines"
    assert sig.name == "Rich"
    assert sig.to_dspy().__name__ == "Rich"


def test_from_dspy_is_cached_until_the_class_changes() -> None:
    cls = _dspy("a -> b", "one")
    first = Signature.from_dspy(cls)
    assert Signature.from_dspy(cls) is first
    cls.instructions = "two"  # type: ignore[attr-defined]
    assert Signature.from_dspy(cls).instructions == "two"


# -- ChainOfThought and derived signatures ------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    CLASS_SIGNATURES
    + [_dspy(t, i) for t, i in STRING_SIGNATURES]
    + [_dspy("reasoning -> answer"), _dspy("q -> answer, reasoning: int"), _dspy("q -> reasoning")],
)
def test_with_reasoning_matches_chain_of_thought(cls: type) -> None:
    expected = Signature.from_dspy(dspy.ChainOfThought(cls).predict.signature)
    got = Signature.from_dspy(cls).with_reasoning()
    assert got == expected
    assert got.instructions == expected.instructions
    assert Signature.from_dspy(cls).with_reasoning() is got  # cached


def test_derived_signatures_match_dspy() -> None:
    cls = _dspy("a, b: int -> c, d: list[str]", "Do.")
    sig = Signature.from_dspy(cls)
    new_in = Field.input("z", float, desc="zed")
    new_out = Field.output("y")
    assert sig.prepend(new_in) == Signature.from_dspy(
        cls.prepend("z", dspy.InputField(desc="zed"), float)
    )  # type: ignore[attr-defined]
    assert sig.append(new_out) == Signature.from_dspy(cls.append("y", dspy.OutputField(), str))  # type: ignore[attr-defined]
    assert sig.insert(1, new_out) == Signature.from_dspy(
        cls.insert(1, "y", dspy.OutputField(), str)
    )  # type: ignore[attr-defined]
    assert sig.delete("b") == Signature.from_dspy(cls.delete("b"))  # type: ignore[attr-defined]
    assert sig.delete("nope") == sig
    assert sig.with_instructions("New.") == Signature.from_dspy(cls.with_instructions("New."))  # type: ignore[attr-defined]
    assert sig.with_instructions("") == Signature.from_dspy(cls.with_instructions(""))  # type: ignore[attr-defined]
    with pytest.raises(SignatureError, match="invalid index"):
        sig.insert(5, new_out)


# -- custom types, caching, the object itself ---------------------------------------------------


def test_custom_types_explicit_and_from_the_callers_frame() -> None:
    explicit = Signature.parse("q -> p: Point", custom_types={"Point": Point})
    assert explicit.fields["p"].annotation is Point

    class Local(pydantic.BaseModel):
        v: int

    found = Signature.parse("q -> p: Local, d: datetime.date")
    assert found.fields["p"].annotation is Local
    assert found.fields["d"].annotation is datetime.date
    assert found == Signature.from_dspy(dspy.Signature("q -> p: Local, d: datetime.date"))
    # DSPy quirk, mirrored: once custom types are in play, NoneType is not a known name.
    with pytest.raises(SignatureError, match="NoneType"):
        Signature.parse("q -> p: Local, n: NoneType")
    with pytest.raises(Exception):  # noqa: B017, PT011
        dspy.Signature("q -> p: Local, n: NoneType")


def test_parsing_is_cached() -> None:
    text = "context, question -> answer, confidence: float"
    first = Signature.parse(text)
    assert Signature.parse(text) is first
    assert ensure_signature(text) is first
    assert Signature.parse(text, "Other.") is not first


def test_signature_is_immutable_hashable_and_picklable() -> None:
    sig = Signature.parse("a: int -> b: list[str]", "Go.")
    with pytest.raises(AttributeError):
        sig.instructions = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        sig._inputs = ()  # type: ignore[misc]
    assert {sig: 1}[Signature(sig.inputs, sig.outputs, "Go.")] == 1
    assert sig != Signature([Field.input("a", int)], [Field.output("b", list[str])], "Go.")
    assert pickle.loads(pickle.dumps(sig)) == sig
    assert sig.signature == "a -> b"
    assert "a: int" in repr(sig)


def test_constructor_validates_fields() -> None:
    with pytest.raises(SignatureError, match="more than once"):
        Signature([Field.input("a")], [Field.output("a")])
    with pytest.raises(SignatureError, match="given as an input"):
        Signature([Field.output("a")], [])
    with pytest.raises(SignatureError, match="instructions"):
        Signature([Field.input("instructions")], [])
    with pytest.warns(SignatureWarning, match="shadows"):
        Signature([Field.input("json")], [Field.output("b")])


# -- properties -------------------------------------------------------------------------------

_TOKENS = [
    "->", "->", ":", ",", ", ", " ", "[", "]", "(", ")", "|", "=", "*", "/", "#", "\n", "'x'",
    '"y"', "int", "str", "list", "dict", "Literal", "Optional", "Union", "None", "NoneType", "Any",
    "tuple",
    "...", "Field(", "default=", "typing.", "datetime.date", "a", "b", "c1", "_p", "é", "答",
    "instructions", "class", "1", "-", ".", "\x00", "\t",
]  # fmt: skip


@FAST
@given(
    st.one_of(st.text(max_size=40), st.lists(st.sampled_from(_TOKENS), max_size=14).map("".join))
)
def test_arbitrary_strings_only_raise_signature_error_and_agree_with_dspy(text: str) -> None:
    try:
        dspy_result: Any = Signature.from_dspy(_dspy(text))
    except Exception:
        dspy_result = None
    error: SignatureError | None = None
    try:
        ours: Signature | None = _ours(text)
    except SignatureError as exc:
        error, ours = exc, None
    assert ours == dspy_result
    if error is not None:
        assert error.position is None or 0 <= error.position <= len(text)


_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
_TYPE = st.sampled_from(
    [None, "int", "str", "float", "bool", "list[str]", "dict[str, int]", "Literal['a', 'b']",
     "Optional[int]", "int | None", "tuple[int, ...]", "Any", "List[int]", "set[str]"]
)  # fmt: skip
_FIELD = st.tuples(_NAME, _TYPE).map(lambda t: t[0] if t[1] is None else f"{t[0]}: {t[1]}")


@FAST
@given(
    st.lists(_FIELD, max_size=3),
    st.lists(_FIELD, min_size=1, max_size=3),
    st.sampled_from([" ", "", "\n"]),
)
def test_generated_signatures_agree_with_dspy(ins: list[str], outs: list[str], space: str) -> None:
    text = f"{', '.join(ins)}{space}->{space}{', '.join(outs)}"
    try:
        expected: Signature | None = Signature.from_dspy(_dspy(text))
    except Exception:
        expected = None
    try:
        ours: Signature | None = _ours(text)
    except SignatureError:
        ours = None
    assert ours == expected


def test_typing_namespace_is_not_mutated() -> None:
    before = dict(typing.__dict__)
    _ours("a: decimal.Decimal -> b")
    assert typing.__dict__.keys() == before.keys()
