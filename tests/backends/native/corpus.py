"""Differential-test corpus (signatures, demos, inputs, replies); DSPy 3.4.1 is the oracle."""

from __future__ import annotations

import datetime
import enum
import math
import types
from collections.abc import Callable
from typing import Any, Literal, Optional, Union, get_args, get_origin

import dspy
import pydantic
from dspy.experimental import Document
from dspy.utils.exceptions import AdapterParseError

from dspex.backends.native import UnrecoverableParseError
from dspex.errors import ParseError


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(pydantic.BaseModel):
    x: int
    y: float = 0.0
    label: str | None = None


class QA(dspy.Signature):
    """Answer the question using the context."""

    context: str = dspy.InputField(desc="facts to use")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short answer")
    confidence: float = dspy.OutputField()


class Rich(dspy.Signature):
    """Classify and locate.

    Lines after the first keep their relative indentation:
        - like this one
    """

    text: str = dspy.InputField(desc="the text,\nover two lines")
    hints: list[str] = dspy.InputField(desc="optional hints")
    color: Color = dspy.OutputField(desc="the main colour")
    where: Point = dspy.OutputField()
    score: float = dspy.OutputField(ge=0, le=1, desc="how sure")
    note: str = dspy.OutputField(default="n/a")
    points: list[Point] = dspy.OutputField()


class Edge(dspy.Signature):
    """"""

    payload: dict[str, Any] = dspy.InputField()
    when: datetime.date = dspy.InputField()
    maybe: Optional[str] = dspy.OutputField()  # noqa: UP045 (the spelling is the point)
    count: int | None = dspy.OutputField()
    flag: bool = dspy.OutputField()


JavaCode = dspy.Code["java"]


class Temperature(dspy.Type):
    """A user-defined dspy.Type with a text format (that parses back) and a description."""

    celsius: float

    def format(self) -> str:
        return f'{{"celsius": {self.celsius}}}'

    @classmethod
    def description(cls) -> str:
        return "A temperature: an object with `celsius`, a number."


class Snippet(dspy.Type):
    """A user-defined dspy.Type that formats as content parts."""

    text: str

    def format(self) -> list[dict[str, Any]]:
        return [{"type": "text", "text": f"snippet: {self.text}"}]


class Convert(dspy.Signature):
    """Convert the reading, with the snippets in mind."""

    reading: Temperature = dspy.InputField()
    snippet: Snippet = dspy.InputField()
    earlier: list[Temperature] = dspy.InputField()
    converted: Temperature = dspy.OutputField()
    maybe: Optional[Temperature] = dspy.OutputField()  # noqa: UP045


class CodeGen(dspy.Signature):
    """Write the code, then explain it."""

    task: str = dspy.InputField()
    snippet: dspy.Code = dspy.InputField(desc="code to start from")
    code: JavaCode = dspy.OutputField()
    notes: Optional[dspy.Code] = dspy.OutputField()  # noqa: UP045


class Media(dspy.Signature):
    """Answer about the media: a photo, a gallery, a clip, a file and a document."""

    photo: dspy.Image = dspy.InputField(desc="the photo")
    gallery: list[dspy.Image] = dspy.InputField()
    clip: dspy.Audio = dspy.InputField()
    report: dspy.File = dspy.InputField()
    doc: Document = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class Think(dspy.Signature):
    """Think, then answer with a number."""

    question: str = dspy.InputField()
    why: dspy.Reasoning = dspy.OutputField(desc="your reasoning")
    answer: int = dspy.OutputField()
    aside: Optional[dspy.Reasoning] = dspy.OutputField()  # noqa: UP045 (not DSPy's native one)


def search(query: str, k: int = 3) -> list[str]:
    """Search the web for ``query``."""
    return [query] * k


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class Agentic(dspy.Signature):
    """Pick the tools to call, then answer."""

    question: str = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    calls: dspy.ToolCalls = dspy.OutputField()
    answer: str = dspy.OutputField()


STRING_SIGNATURES: list[tuple[str, str | None]] = [
    ("question -> answer", None),
    ("context, question -> answer", None),
    ("x: int, items: list[str] -> ok: bool, scores: dict[str, float]", None),
    ("text -> label: Literal['pos', 'neg', 'neutral']", "Classify the sentiment."),
    ("n: int -> pick: Literal[1, 2, 3], quote: Literal[\"it's\", 'say \"hi\"', 'plain']", None),
    ("q -> a: Optional[str], n: int | None, u: Union[int, str]", None),
    ("q: Optional[list[int]] -> t: tuple[int, str], s: set[int], anything: Any, f: float", None),
    ("-> answer", "Say something."),
    ("document -> summary", "Summarize.\n\n    Be brief.\n\tTabs too.\n"),
    ("frage -> antwort", "Réponds en français — s'il te plaît. 日本語"),
    ("camelCase, HTMLParser, text2number -> out_1, Out2", ""),
    ("a: List[str], b: Dict[str, List[int]] -> c: list[dict[str, int]], d: bool", None),
]

CLASS_SIGNATURES: list[type] = [QA, Rich, Edge, CodeGen, Convert, Media, Think, Agentic]


def dspy_signatures() -> list[tuple[str, type]]:
    """Every corpus signature as a DSPy class, with a test id."""
    out: list[tuple[str, type]] = []
    for text, instructions in STRING_SIGNATURES:
        out.append((text, dspy.Signature(text, instructions)))
    out.extend((cls.__name__, cls) for cls in CLASS_SIGNATURES)
    return out


_STRINGS = [
    "Paris",
    "",
    "multi\nline\n  indented\n",
    "unicode: 日本語 — «quotes» 🚀 \u2028 sep",
    "  padded  \n\n",
    "has [[ ## header ## ]] inside",
]


def sample(annotation: Any, variant: int) -> Any:
    """A value of ``annotation`` (``variant`` picks among several)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is str:
        return _STRINGS[variant % len(_STRINGS)]
    if annotation is bool:
        return variant % 2 == 0
    if annotation is int:
        return [42, -7, 0][variant % 3]
    if annotation is float:
        return [0.99, 1e-9, 3.0, math.inf][variant % 4]
    if annotation is Any:
        return {"k": [1, None, "x"], "nested": {"t": (1, 2)}}
    if annotation is Color:
        return [Color.RED, Color.GREEN][variant % 2]
    if annotation is Point:
        return Point(x=variant, y=1.5, label="p" if variant % 2 else None)
    if annotation is datetime.date:
        return datetime.date(2024, 2, 29)
    if annotation is Temperature:
        return [Temperature(celsius=21.5), {"celsius": -3}, Temperature(celsius=0)][variant % 3]
    if annotation is Snippet:
        return [Snippet(text="a"), Snippet(text="multi\nline")][variant % 2]
    if annotation is dspy.Tool:
        return [dspy.Tool(search), dspy.Tool(weather)][variant % 2]
    if annotation is dspy.ToolCalls:
        return [
            dspy.ToolCalls.from_dict_list([{"name": "search", "args": {"query": "cats"}}]),
            dspy.ToolCalls.from_dict_list(
                [{"name": "weather", "args": {"city": "Paris"}}, {"name": "search", "args": {}}]
            ),
        ][variant % 2]
    if annotation is dspy.Reasoning:
        return [dspy.Reasoning(content="Six times seven."), "plain text reasoning"][variant % 2]
    if annotation is dspy.Image:
        return [
            dspy.Image("https://example.com/cat.png"),
            dspy.Image("data:image/png;base64,iVBORw0KGgo="),
            "https://example.com/passed-as-text.jpg",
        ][variant % 3]
    if annotation is dspy.Audio:
        return [
            dspy.Audio(data="UklGRiQAAABXQVZF", audio_format="wav"),
            dspy.Audio(data="SUQzBAAAAAAA", audio_format="mp3"),
        ][variant % 2]
    if annotation is dspy.File:
        return [
            dspy.File(file_data="data:application/pdf;base64,JVBERi0=", filename="r.pdf"),
            dspy.File(file_id="file-123"),
        ][variant % 2]
    if annotation is Document:
        return [
            Document(data="Paris is the capital of France.", title="Facts"),
            Document(data="Plain.", context="from a wiki"),
        ][variant % 2]
    if isinstance(annotation, type) and issubclass(annotation, dspy.Code):
        return [
            "x = 1",
            annotation(code="int y = 2;"),
            f"```{annotation.language}\nprint('hi')\n```",
            "```\nbare fence\n```",
        ][variant % 4]
    if origin is Literal:
        return args[variant % len(args)]
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if variant % 3 == 2 and len(non_none) < len(args):
            return None
        return sample(non_none[variant % len(non_none)], variant)
    if origin is list:
        return [sample(args[0], variant + i) for i in range(variant % 3 + 1)]
    if origin is set:
        return {sample(args[0], variant)}
    if origin is tuple:
        return tuple(sample(a, variant) for a in args)
    if origin is dict:
        return {f"key{i}": sample(args[1], variant + i) for i in range(2)}
    raise AssertionError(f"no sample for {annotation!r}")


def demos_for(sig: type) -> dict[str, list[dict[str, Any]]]:
    """Named demo lists: none, one complete, and a mix with incomplete/dropped/extra-key demos."""
    names = list(sig.fields)
    ins, outs = list(sig.input_fields), list(sig.output_fields)

    def full(v: int) -> dict[str, Any]:
        return {k: sample(f.annotation, v) for k, f in sig.fields.items()}

    mixed: list[dict[str, Any]] = [full(1)]
    if outs:
        missing_out = full(2)
        del missing_out[outs[-1]]
        mixed.append(missing_out)
        mixed.append({k: v for k, v in full(3).items() if k in outs})  # no inputs: dropped
    if ins:
        missing_in = full(4)
        del missing_in[ins[0]]
        mixed.append(missing_in)
        mixed.append({k: v for k, v in full(5).items() if k in ins})  # no outputs: dropped
    with_none = full(6)
    with_none[names[0]] = None
    mixed.append(with_none)
    mixed.append({**full(7), "augmented": True, "unrelated": [1, 2]})
    return {"no-demos": [], "one-demo": [full(0)], "mixed-demos": mixed}


def inputs_for(sig: type) -> dict[str, dict[str, Any]]:
    """Named input dicts: typical values, edge values (lists for str fields...), one missing."""
    ins = sig.input_fields
    typical = {k: sample(f.annotation, 0) for k, f in ins.items()}
    edge: dict[str, Any] = {}
    for i, (k, f) in enumerate(ins.items()):
        if f.annotation is str:
            edge[k] = [["one"], [], ["a\nb", "c«d»", "e"], "", "x"][i % 5]
        else:
            edge[k] = sample(f.annotation, i + 2)
    edge["not_a_field"] = "ignored"
    missing = dict(list(typical.items())[1:])
    return {"typical": typical, "edge": edge, "missing-first": missing}


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """``fn(*args)`` as ``("ok", typed value)``, ``("parse_error",)`` or ``("crash",)``."""
    try:
        value = fn(*args)
    except AdapterParseError:
        return ("parse_error",)
    except UnrecoverableParseError:
        return ("crash",)
    except ParseError:
        return ("parse_error",)
    except Exception:
        return ("crash",)
    return ("ok", typed(value))


def typed(value: Any) -> Any:
    """A structure that compares equal only if values *and types* are equal (nan-safe)."""
    if isinstance(value, dict):
        return ("dict", tuple((k, typed(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(typed(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, tuple(sorted(repr(typed(v)) for v in value)))
    if isinstance(value, pydantic.BaseModel):
        return (type(value).__name__, typed(value.model_dump()))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)
