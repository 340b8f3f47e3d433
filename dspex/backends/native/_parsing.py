"""LM reply text to typed values, as DSPy 3.4.1's ``parse_value`` and adapters' ``parse`` do it."""

from __future__ import annotations

import ast
import enum
import re
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin

from dspex.errors import ParseError
from dspex.signature import Field

from ._types import allows_none

ValueParser = Callable[[Any], Any]
HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_JSON_OBJECT = r"\{(?:[^{}]|(?R))*\}"


class UnrecoverableParseError(ParseError):
    """A reply on which DSPy itself fails with an exception other than ``AdapterParseError``.

    Examples: ``ast.literal_eval`` raising ``TypeError``, JSON nested deeper than the recursion
    limit. DSPy raises that bare exception and does *not* fall back to JSONAdapter, so
    :meth:`ChatAdapter.fallback_adapter` returns ``None`` for this error.
    """


def _json_repair_loads(text: str) -> Any:
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


def make_value_parser(annotation: Any) -> ValueParser:
    """A callable equivalent to ``parse_value(value, annotation)`` with its TypeAdapter cached."""
    if annotation is str:
        return str
    if isinstance(annotation, enum.EnumMeta):
        return lambda value: find_enum_member(annotation, value)

    origin = get_origin(annotation)
    is_literal = origin is Literal
    allowed = get_args(annotation) if is_literal else ()
    args = get_args(annotation)
    optional_str = (
        (origin is Union or origin is types.UnionType) and type(None) in args and str in args
    )
    adapter: list[Any] = []

    def validate(value: Any) -> Any:
        if not adapter:
            from pydantic import TypeAdapter

            adapter.append(TypeAdapter(annotation))
        return adapter[0].validate_python(value)

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
        if not isinstance(value, str):
            return validate(value)
        if optional_str:
            return validate(value)
        candidate = _json_repair_loads(value)
        if candidate == "" and value != "":
            try:
                candidate = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                candidate = value
        return validate(candidate)

    return parse


def apply_defaults(outputs: tuple[Field, ...], fields: dict[str, Any]) -> dict[str, Any]:
    """DSPy's ``apply_output_field_defaults``: fill optional outputs, in signature order."""
    completed: dict[str, Any] = {}
    for f in outputs:
        if f.name in fields:
            completed[f.name] = fields[f.name]
        elif not f.required:
            completed[f.name] = f.default_value()
        elif allows_none(f.annotation):
            completed[f.name] = None
    return completed


def _missing_error(
    adapter: str, outputs: tuple[Field, ...], completion: str, fields: dict[str, Any]
) -> ParseError:
    missing = [f.name for f in outputs if f.name not in fields]
    return ParseError(
        f"the LM response lacks output field(s) {', '.join(missing)}; expected "
        f"[{', '.join(f.name for f in outputs)}], parsed [{', '.join(fields)}]",
        adapter_name=adapter,
        lm_response=completion,
        parsed_result=fields,
    )


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


def parse_chat(
    completion: str,
    outputs: tuple[Field, ...],
    parsers: Mapping[str, ValueParser],
) -> dict[str, Any]:
    """ChatAdapter.parse: ``[[ ## name ## ]]`` sections, first occurrence wins, typed values."""
    if not isinstance(completion, str):
        raise _not_text("ChatAdapter", completion)
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in completion.splitlines():
        if "[[ ## " in line:
            match = HEADER.match(line.strip())
            if match:
                remaining = line[match.end() :].strip()
                sections.append((match.group(1), [remaining] if remaining else []))
                continue
        sections[-1][1].append(line)

    fields: dict[str, Any] = {}
    for name, lines in sections:
        if name is not None and name not in fields and name in parsers:
            value = "\n".join(lines).strip()
            try:
                fields[name] = parsers[name](value)
            except Exception as exc:
                raise _value_error("ChatAdapter", name, value, exc, completion, fields) from exc
    fields = apply_defaults(outputs, fields)
    if len(fields) != len(outputs):
        raise _missing_error("ChatAdapter", outputs, completion, fields)
    return fields


def parse_json(
    completion: str,
    outputs: tuple[Field, ...],
    parsers: Mapping[str, ValueParser],
) -> dict[str, Any]:
    """JSONAdapter.parse: lenient JSON (json_repair, then the first ``{...}``), typed values."""
    adapter = "JSONAdapter"
    if not isinstance(completion, str):
        raise _not_text(adapter, completion)
    try:
        fields = _json_repair_loads(completion)
        if not isinstance(fields, dict):
            import regex

            match = regex.search(_JSON_OBJECT, completion, regex.DOTALL)
            if match:
                completion = match.group(0)
                fields = _json_repair_loads(completion)
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
    fields = {k: v for k, v in fields.items() if k in parsers}
    for name, value in fields.items():
        try:
            fields[name] = parsers[name](value)
        except Exception as exc:
            raise _value_error(adapter, name, value, exc, completion, fields) from exc
    fields = apply_defaults(outputs, fields)
    if len(fields) != len(outputs):
        raise _missing_error(adapter, outputs, completion, fields)
    return fields
