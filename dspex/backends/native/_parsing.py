"""LM reply text to typed values, as DSPy 3.4.1's ``parse_value`` and adapters' ``parse`` do it.

Everything that depends only on the signature (a value parser per output field, with its pydantic
``TypeAdapter`` built once; the usual header lines) is built once in a :class:`ReplyParser`. Fast
paths skip work whose result is known to be DSPy's, and otherwise run DSPy's steps:

- :func:`loads_lenient` returns ``json.loads(text)`` without json_repair when the text is plain
  JSON, which is what ``json_repair.loads`` itself returns first, and ``""`` without it for a
  text in which json_repair finds nothing that starts a value (prose, most code);
- a text value that cannot be a Python literal (prose, a fenced code block) stays the text
  without ``ast.literal_eval``;
- an ``int``, ``float`` or ``bool`` field reads a plain JSON number with ``int()`` / ``float()``,
  as json's scanner does, and a candidate value of exactly the field's type is returned as is,
  which is what pydantic's validation returns for it;
- ChatAdapter finds the usual header lines (``[[ ## name ## ]]`` alone on a line) with a dict
  lookup, and only runs the header regex on other lines that contain ``[[ ## ``.
"""

from __future__ import annotations

import ast
import enum
import json
import keyword
import re
import sys
import types
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from dspex._dspy_import import imported_class
from dspex.errors import ParseError
from dspex.signature import Field

from ._types import allows_none

ValueParser = Callable[[Any], Any]
HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_JSON_OBJECT = r"\{(?:[^{}]|(?R))*\}"
_decode_json = json.JSONDecoder().raw_decode  # json.loads's decoder: the default settings
_JSON_SPACE = frozenset(" \t\n\r")  # what json.loads skips around a value
_JSON_STARTS = frozenset('"{[-0123456789tfnNI')  # the first characters of JSON values it reads
_JSON_WORDS = frozenset(("true", "false", "null", "NaN", "Infinity", "-Infinity"))
# Texts in which json_repair's parser finds no value to start (see loads_lenient): no bracket
# or brace, and no "(" with nothing but whitespace before it on its line. Property tests hold
# loads_lenient on such texts (prose, code) equal to json_repair.loads.
_NO_CONTAINER = re.compile(r"[^{}\[\]]*")
_LINE_START_PAREN = re.compile(r"(?:\A|[\n\r])[^\S\n\r]*\(")  # (re's \s is str.isspace)
# A leading ASCII name: not a string prefix (no quote after it), no non-ASCII letter in it (see
# _literal_free).
_NAME = "[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_'\"]|[^\\x00-\\x7f])"
_FIRST_NAME = re.compile(_NAME)
# A text starting with such a name, without brackets or braces, in which no "(" opens a line
# (see _plain_code).
_NAMED_CODE = re.compile(
    f"({_NAME})[^{{}}\\[\\]\\n\\r]*(?:[\\n\\r]+(?![^\\S\\n\\r]*\\()[^{{}}\\[\\]\\n\\r]*)*"
)
# ASCII texts without what starts a Python literal (see _literal_free).
_NO_LITERAL = re.compile("[^0-9{}\\[\\]()\"'`#/]*")
# The texts json.loads reads as one number (ASCII digits only), with an integer part short enough
# for int()'s digit limit (640 at the lowest): json's scanner converts these with int() / float().
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,500})(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class UnrecoverableParseError(ParseError):
    """A reply on which DSPy itself fails with an exception other than ``AdapterParseError``.

    Examples: ``ast.literal_eval`` raising ``TypeError``, JSON nested deeper than the recursion
    limit. DSPy raises that bare exception and does *not* fall back to JSONAdapter, so
    :meth:`ChatAdapter.fallback_adapter` returns ``None`` for this error.
    """


def loads_lenient(text: str) -> Any:
    """``json_repair.loads(text)``, without json_repair when ``text`` is plain JSON or holds
    nothing json_repair could read as a value.

    json_repair returns ``json.loads(text)`` whenever that succeeds. ``json.loads`` skips leading
    whitespace, ``raw_decode``-s one value and accepts only whitespace after it, so a value
    decoded from index 0 that ends exactly at ``len(text)`` is its result. Otherwise its parser
    scans the text for the start of a value. Outside a container it starts one only at ``{``,
    at ``[``, and at a ``(`` with nothing but whitespace before it on its line (a tuple); it
    skips comments (``#``, ``/``), reads a leading quote as a key only when the text ends with
    ``}``, and steps over every other character. So a text without brackets, braces and such
    a ``(`` (prose: a Reasoning, an answer; most code) holds no value for it, and it returns
    ``""``. Each comment costs it two nested calls; a text with so many that json_repair would
    hit the recursion limit (and raise) goes through json_repair, as does anything else
    (repairs, errors). (JSON nested so deep that json.loads hits the recursion limit raises
    RecursionError, as in DSPy.)
    """
    first = text[:1]
    if first in _JSON_STARTS or first.isdigit():
        try:
            value, end = _decode_json(text)
        except ValueError:  # JSONDecodeError: not one JSON value from the first character
            pass
        else:
            if end == len(text):
                return value
    if (
        _NO_CONTAINER.fullmatch(text)
        and _LINE_START_PAREN.search(text) is None
        and _few_comments(text, sys.getrecursionlimit())
    ):
        if text[:1] in _JSON_SPACE or text[-1:] in _JSON_SPACE:
            try:  # a number or literal with whitespace around it: json.loads reads it
                return json.loads(text)
            except ValueError:
                pass
        # (otherwise json.loads fails as raw_decode did, or finds text after the value)
        return ""
    import json_repair

    return json_repair.loads(text)


def find_enum_member(enum_cls: Any, identifier: Any) -> Any:
    """DSPy's ``find_enum_member``: match by value first, then by member name."""
    for member in enum_cls:
        if member.value == identifier:
            return member
    if identifier in enum_cls.__members__:
        return enum_cls[identifier]
    raise ValueError(f"{identifier} is not a valid name or value for the enum {enum_cls.__name__}")


def _prose(text: str) -> bool:
    """Whether ``text`` is a text neither json_repair nor literal_eval reads a value from (the
    quick check for prose): what :func:`loads_lenient` and :func:`_literal_free` decide for an
    ASCII text without digits, quotes, brackets, braces, parentheses, ``#``, ``/``, ``True``,
    ``False``, ``None`` and ``...``, unless json.loads reads it (a JSON word, as ``null``)."""
    return (
        _NO_LITERAL.fullmatch(text) is not None
        and text.isascii()
        and len(text) < sys.getrecursionlimit() // 2
        and "True" not in text
        and "False" not in text
        and "None" not in text
        and "..." not in text
        and text.strip(" \t\n\r") not in _JSON_WORDS
    )


def _plain_code(text: str) -> bool:
    """The quick check for code (``print(2)``): a text in which json_repair finds no value
    (:func:`loads_lenient`: no bracket or brace, no ``(`` opening a line, not too many comment
    starts, not a JSON word) and whose first token is a name literal_eval rejects
    (:func:`_literal_free`)."""
    code = _NAMED_CODE.fullmatch(text)
    if code is None:
        return False
    limit = sys.getrecursionlimit()
    return (
        _not_literal_name(code[1])
        and len(text) < limit // 2
        and _few_comments(text, limit)
        and text.rstrip(" \t\n\r") not in _JSON_WORDS
    )


def _few_comments(text: str, limit: int) -> bool:
    """Whether json_repair's nested calls for the comments in ``text`` (two for each ``#`` or
    ``/``) stay well under the recursion ``limit``."""
    return text.count("#") + text.count("/") < limit // 8


def _not_literal_name(name: str) -> bool:
    """Whether an expression starting with the name ``name`` can be no literal: neither a
    keyword (``None``, ``not``, ...) nor ``set`` (``set()`` is one)."""
    return name != "set" and not keyword.iskeyword(name)


def _literal_free(text: str) -> bool:
    """Whether ``ast.literal_eval(text)`` is sure to raise ValueError or SyntaxError.

    literal_eval strips leading spaces and tabs, then parses an expression. A first token that
    is a backtick (a fenced code block) fails the parse: no Python token starts with one. A
    first token that is a name (``print(2)``, ``x = 1``), but for a keyword (``None``,
    ``not``, ...) and ``set`` (``set()`` is a literal), is a name in whatever expression parses,
    and literal_eval rejects names: an ASCII name, not followed by a quote (a string prefix) or
    by a non-ASCII letter (identifiers are NFKC-normalized). Otherwise every literal it reads
    holds a digit, a quote, a bracket, a brace, a parenthesis, ``True``, ``False``, ``None``
    or ``...``, checked on ASCII texts. But for the backtick, only texts shorter than half the
    recursion limit: operators nested deeper (``- - - x``) make the parser raise
    RecursionError instead."""
    stripped = text.lstrip(" \t")
    if stripped[:1] == "`":
        return True
    if len(text) >= sys.getrecursionlimit() // 2:
        return False
    name = _FIRST_NAME.match(stripped)
    if name is not None and _not_literal_name(name[0]):
        return True
    return (
        text.isascii()
        and _NO_LITERAL.fullmatch(text) is not None
        and "True" not in text
        and "False" not in text
        and "None" not in text
        and "..." not in text
    )


def _candidate(value: str) -> Any:
    """What DSPy's ``parse_value`` validates for a text value: lenient JSON, then a literal."""
    if _prose(value) or _plain_code(value):
        return value
    candidate = loads_lenient(value)
    if candidate == "" and value != "":  # json_repair's "nothing found"
        if _literal_free(value):
            return value  # what literal_eval's failure leaves
        try:
            candidate = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            candidate = value
    return candidate


def make_value_parser(annotation: Any) -> ValueParser:
    """A callable equivalent to ``parse_value(value, annotation)`` with its TypeAdapter cached."""
    if annotation is str:
        return str
    if isinstance(annotation, enum.EnumMeta):
        return lambda value: find_enum_member(annotation, value)

    validator: list[ValueParser] = []  # built on first use

    def validate(value: Any) -> Any:
        if not validator:
            validator.append(_validator(annotation))
        return validator[0](value)

    if annotation is int or annotation is float or annotation is bool:

        def parse_scalar(value: Any) -> Any:
            if isinstance(value, str):
                number = _JSON_NUMBER.fullmatch(value)
                if number is None:
                    candidate = _candidate(value)
                elif number.lastindex:  # a fraction or an exponent
                    candidate = float(value)
                else:
                    candidate = int(value)
            else:
                candidate = value
            # pydantic returns an int / float (nan and inf included) / bool of exactly the
            # annotated type unchanged; anything else it converts or rejects.
            return candidate if type(candidate) is annotation else validate(candidate)

        return parse_scalar

    origin = get_origin(annotation)
    is_literal = origin is Literal
    allowed = get_args(annotation) if is_literal else ()
    args = get_args(annotation)
    optional_str = (
        (origin is Union or origin is types.UnionType) and type(None) in args and str in args
    )

    # A dspy.Type (Code, Reasoning, a user's type) whose candidate does not validate is
    # validated once more from the text itself: its own validator may take text. (Its
    # validator is built now: DSPy, hence pydantic, is loaded.)
    dspy_type = _is_dspy_type(annotation)
    if dspy_type:
        from pydantic import ValidationError

        core = _validator(annotation)

        def parse_dspy_type(value: Any) -> Any:
            if not isinstance(value, str):
                return core(value)
            try:
                return core(_candidate(value))
            except ValidationError as error:
                try:
                    return core(value)
                except ValidationError:
                    raise error from None

        return parse_dspy_type

    def parse(value: Any) -> Any:
        if is_literal:
            if value in allowed:
                return value
            if isinstance(value, str):
                v = value.strip()
                if v.startswith(("Literal[", "str[")) and v.endswith("]"):
                    v = v[v.find("[") + 1 : -1]
                if len(v) > 1 and v[0] == v[-1] and v[0] in "\"'":
                    v = v[1:-1]
                if v in allowed:
                    return v
                value = v
        if not isinstance(value, str) or optional_str:
            return validate(value)
        return validate(_candidate(value))

    return parse


def _validator(annotation: Any) -> ValueParser:
    """``TypeAdapter(annotation).validate_python`` with its defaults: the core validator's own
    method, without TypeAdapter's Python wrapper (unless pydantic defers building it)."""
    from pydantic import TypeAdapter

    adapter = TypeAdapter(annotation)
    core = getattr(adapter, "validator", None)
    if type(core).__name__ in ("SchemaValidator", "PluggableSchemaValidator"):
        method: ValueParser = core.validate_python  # type: ignore[union-attr]
        return method
    return adapter.validate_python


def _is_dspy_type(annotation: Any) -> bool:
    base: Any = imported_class("dspy.adapters.types.base_type", "Type")
    return base is not None and isinstance(annotation, type) and issubclass(annotation, base)


def _value_error(
    adapter: str, name: str, value: Any, exc: Exception, completion: str, fields: dict[str, Any]
) -> ParseError:
    cls = ParseError if isinstance(exc, ValueError) else UnrecoverableParseError
    return cls(
        f"failed to parse field {name} with value {value!r}: {type(exc).__name__}: {exc}",
        adapter_name=adapter,
        lm_response=completion,
        parsed_result=fields,
    )


def _not_text(adapter: str, completion: Any) -> ParseError:
    return UnrecoverableParseError(
        f"the completion must be a str, not {type(completion).__name__}",
        adapter_name=adapter,
        lm_response=None if completion is None else str(completion),
    )


class ReplyParser:
    """A signature's output fields, ready to parse replies into (built once per signature)."""

    __slots__ = ("fields", "headers", "names", "parsers")

    def __init__(self, outputs: tuple[Field, ...]) -> None:
        self.fields = outputs
        self.names = tuple(f.name for f in outputs)
        self.parsers: dict[str, ValueParser] = {
            f.name: make_value_parser(f.annotation) for f in outputs
        }
        # Header lines as LMs write them (no indent, nothing after), each mapped to the name
        # HEADER finds on it: a dict lookup instead of a regex match for those lines.
        self.headers: dict[str, str] = {}
        for name in (*self.names, "completed"):
            line = f"[[ ## {name} ## ]]"
            match = HEADER.match(line)
            if match and match.group(1) == name and match.end() == len(line):
                self.headers[line] = name

    def parse_chat(self, completion: str) -> dict[str, Any]:
        """ChatAdapter.parse: ``[[ ## name ## ]]`` sections, first occurrence wins, typed values."""
        if not isinstance(completion, str):
            raise _not_text("ChatAdapter", completion)
        lines = completion.splitlines()
        headers = self.headers
        parsers = self.parsers
        fields: dict[str, Any] = {}
        # One pass: a header line closes the section before it (parsed if it is the first of
        # an output field's) and opens its own (with any text after the header on its line).
        name: str | None = None  # the open section's field (None: before the first header)
        first = 0  # the open section's first line
        rest = ""
        for i, line in enumerate(lines):
            if "[[ ## " not in line:
                continue
            found = headers.get(line)
            after = ""
            if found is None:
                match = HEADER.match(line.strip())
                if match is None:
                    continue
                found = match.group(1)
                after = line[match.end() :].strip()
            if name is not None and name in parsers and name not in fields:
                self._take(name, lines[first:i], rest, completion, fields)
            name, first, rest = found, i + 1, after
        if name is not None and name in parsers and name not in fields:
            self._take(name, lines[first:], rest, completion, fields)
        return self.complete("ChatAdapter", completion, fields)

    def _take(
        self, name: str, body: list[str], rest: str, completion: str, fields: dict[str, Any]
    ) -> None:
        """Parse one section's text (its lines, after any text beside the header) into
        ``fields[name]``."""
        if rest:
            body.insert(0, rest)
        value = "\n".join(body).strip()
        parser = self.parsers[name]
        try:
            fields[name] = value if parser is str else parser(value)
        except Exception as exc:
            raise _value_error("ChatAdapter", name, value, exc, completion, fields) from exc

    def parse_json(self, completion: str) -> dict[str, Any]:
        """JSONAdapter.parse: lenient JSON (json_repair, then the first ``{...}``), typed values."""
        adapter = "JSONAdapter"
        if not isinstance(completion, str):
            raise _not_text(adapter, completion)
        try:
            fields = loads_lenient(completion)
            if not isinstance(fields, dict):
                import regex

                match = regex.search(_JSON_OBJECT, completion, regex.DOTALL)
                if match:
                    completion = match.group(0)
                    fields = loads_lenient(completion)
        except Exception as exc:  # DSPy lets these escape (e.g. ValueError on deep nesting)
            raise UnrecoverableParseError(
                f"{type(exc).__name__}: {exc}", adapter_name=adapter, lm_response=completion
            ) from exc
        if not isinstance(fields, dict):
            raise ParseError(
                "LM response cannot be serialized to a JSON object.",
                adapter_name=adapter,
                lm_response=completion,
            )
        parsers = self.parsers
        fields = {k: v for k, v in fields.items() if k in parsers}
        for name, value in fields.items():
            try:
                fields[name] = parsers[name](value)
            except Exception as exc:
                raise _value_error(adapter, name, value, exc, completion, fields) from exc
        return self.complete(adapter, completion, fields)

    def with_defaults(self, fields: dict[str, Any]) -> dict[str, Any]:
        """DSPy's ``apply_output_field_defaults``: the outputs in signature order, the optional
        ones filled in (their default, or None); a required output missing stays missing."""
        completed: dict[str, Any] = {}
        for f in self.fields:
            if f.name in fields:
                completed[f.name] = fields[f.name]
            elif not f.required:
                completed[f.name] = f.default_value()
            elif allows_none(f.annotation):
                completed[f.name] = None
        return completed

    def complete(self, adapter: str, completion: str, fields: dict[str, Any]) -> dict[str, Any]:
        """:meth:`with_defaults`, then a ``ParseError`` if a required output is missing."""
        names = self.names
        if tuple(fields) == names:
            return fields
        completed = self.with_defaults(fields)
        if len(completed) != len(names):
            missing = [name for name in names if name not in completed]
            raise ParseError(
                f"the LM response lacks output field(s) {', '.join(missing)}; expected "
                f"[{', '.join(names)}], parsed [{', '.join(completed)}]",
                adapter_name=adapter,
                lm_response=completion,
                parsed_result=completed,
            )
        return completed
