"""The XML of DSPy 3.4.1's XMLAdapter: nested-XML outputs, their skeletons, and reply parsing.

An output whose type is a list, a dict, a TypedDict or a pydantic model (other than DSPy's own)
is written as nested XML (``<answer><item>1</item></answer>``), described to the LM by a
skeleton made from its JSON schema, and read back from the reply's elements guided by that
schema; every other field is one element holding the text its value formats to. The schemas
are built once per output field (:class:`XMLField`).
"""

from __future__ import annotations

import re
import types
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin
from xml.sax.saxutils import quoteattr

from dspex.errors import ParseError
from dspex.signature import Field

from ._parsing import ReplyParser, UnrecoverableParseError

Schema = dict[str, Any]
_NULL = {"type": "null"}
# A reply made only of text and ``<name>text</name>`` elements, which the fast path reads as
# the XML parser would: no markup or reference (``<``, ``&``), no ``]]>``, no character the
# parser rejects or changes (controls, ``\r``, surrogates, U+FFFE/U+FFFF), plain ASCII tag
# names. Anything else goes through the parser.
_TEXT = r"[^<&\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]*"
_NAME = r"(?![xX][mM][lL])[A-Za-z_][A-Za-z0-9_]*"
_PLAIN = re.compile(rf"{_TEXT}(?:<({_NAME})>{_TEXT}</\1>{_TEXT})*")
_ELEMENT = re.compile(rf"<({_NAME})>({_TEXT})</\1>")


def uses_nested_xml(annotation: Any) -> bool:
    """Whether XMLAdapter writes an output of this type as nested XML (DSPy's rule: a list, a
    dict, a TypedDict or a pydantic model not defined by DSPy, or an Optional of one)."""
    import pydantic
    from typing_extensions import is_typeddict

    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(args) == 1 and get_origin(annotation) in (Union, types.UnionType):
        annotation = args[0]
    origin = get_origin(annotation)
    item = get_args(annotation)[0] if origin is list and get_args(annotation) else annotation
    if (
        isinstance(item, type)
        and issubclass(item, pydantic.BaseModel)
        and item.__module__.startswith("dspy.")
    ):
        return False
    return (
        origin in (list, dict)
        or is_typeddict(annotation)
        or (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel))
    )


def schema_of(annotation: Any) -> Schema:
    """The JSON schema DSPy reads an XML field's type from (pydantic's, by field name)."""
    from pydantic import TypeAdapter

    schema: Schema = TypeAdapter(annotation).json_schema(by_alias=False)
    return schema


def escape(text: str) -> str:
    """``&`` and ``<`` escaped, as XMLAdapter escapes element text."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def value_to_xml(value: Any, tag: str, key: str | None = None) -> str:
    """A JSON-compatible value as nested XML: list items as ``<item>``, dict keys as tags (or
    ``<entry key="...">`` when a key is not a tag name), ``None`` as an empty element."""
    attrs = "" if key is None else f" key={quoteattr(key)}"
    if isinstance(value, list):
        children = "".join(value_to_xml(item, "item") for item in value)
        return f"<{tag}{attrs}>{children}</{tag}>" if children else f"<{tag}{attrs} />"
    if isinstance(value, dict):
        parts = []
        for name in value:
            text = str(name)
            tag_like = text[:1] + text[1:].replace("-", "_").replace(".", "_")
            child = value[name]
            parts.append(
                value_to_xml(child, text)
                if tag_like.isidentifier()
                else value_to_xml(child, "entry", text)
            )
        return f"<{tag}{attrs}>{''.join(parts)}</{tag}>"
    if value is None:
        return f"<{tag}{attrs} />"
    return f"<{tag}{attrs}>{escape(str(value))}</{tag}>"


def xml_skeleton(tag: str, schema: Schema, definitions: Schema, seen: frozenset[str]) -> str:
    """The nested-XML outline of ``schema`` (``...`` for leaves and recursive references)."""
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return f"<{tag}>...</{tag}>"
        return xml_skeleton(tag, definitions[name], definitions, seen | {name})
    choices = schema.get("anyOf")
    if choices:
        chosen = next((c for c in choices if c.get("type") != "null"), choices[0])
        return xml_skeleton(tag, chosen, definitions, seen)
    if schema.get("type") == "array":
        item = xml_skeleton("item", schema.get("items", {}), definitions, seen)
        return f"<{tag}>{item}</{tag}>"
    properties = schema.get("properties", {})
    children = "".join(xml_skeleton(k, properties[k], definitions, seen) for k in properties)
    return f"<{tag}>{children}</{tag}>" if children else f"<{tag}>...</{tag}>"


def _children(element: ET.Element) -> dict[str, list[ET.Element]]:
    """An element's children grouped by tag (an ``<entry>`` by its ``key``), in order."""
    grouped: defaultdict[str, list[ET.Element]] = defaultdict(list)
    for child in element:
        name = child.attrib.get("key", child.tag) if child.tag == "entry" else child.tag
        grouped[name].append(child)
    return grouped


def _value(elements: list[ET.Element], schema: Schema, definitions: Schema) -> Any:
    """The JSON-like value of the elements one field (or one nested key) names, guided by its
    schema: text for leaves, lists for arrays, dicts for objects."""
    schema = definitions.get(schema.get("$ref", "").rsplit("/", 1)[-1], schema)
    first = elements[0]
    choices = schema.get("anyOf")
    if choices:
        if _NULL in choices and not len(first) and not (first.text or "").strip():
            return None
        choices = [c for c in choices if c.get("type") != "null"]
        schema = choices[0]
        if len(first):  # elements inside: prefer a choice that is not a string
            schema = next((c for c in choices if c.get("type") != "string"), schema)
    kind = schema.get("type")
    if kind == "array":
        if len(elements) == 1 and not len(first):
            text = (first.text or "").strip()
            if not text or text.startswith("["):
                return text or []
        if len(elements) == 1:
            items = _children(first).get("item")
            if items:
                elements = items
        item_schema = schema.get("items", {})
        return [_value([e], item_schema, definitions) for e in elements]
    if kind == "string" and len(first):
        inner = "".join(ET.tostring(child, encoding="unicode") for child in first)
        return (first.text or "") + inner
    children = _children(first)
    if not children:
        if kind == "object" and not (first.text or "").strip():
            return {}
        texts = [(e.text or "").strip() for e in elements]
        return texts[0] if len(texts) == 1 else texts
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", {})
    if not isinstance(extra, dict):
        extra = {}
    return {
        name: _value(items, properties.get(name, extra), definitions)
        for name, items in children.items()
    }


def reply_elements(completion: str) -> dict[str, list[ET.Element]]:
    """The elements of a reply by name, as ``XMLAdapter.parse`` groups them (``ET.ParseError``
    for malformed XML); a reply of plain elements is read without the XML parser."""
    if "]]>" not in completion and _PLAIN.fullmatch(completion) is not None:
        grouped: defaultdict[str, list[ET.Element]] = defaultdict(list)
        for match in _ELEMENT.finditer(completion):
            element = ET.Element(match[1])
            element.text = match[2] or None
            grouped[match[1]].append(element)
        return grouped
    return _children(ET.fromstring(f"<dspy_root>{completion}</dspy_root>"))


class XMLField:
    """One output field as XMLAdapter reads it: its JSON schema (built on first use) and the
    choices to try, the whole schema first, then each of its ``anyOf``."""

    __slots__ = ("adapter", "candidates", "definitions", "field", "is_str", "parse")

    def __init__(self, field: Field, parse: Any) -> None:
        self.field = field
        self.is_str = field.annotation is str
        self.parse = parse  # DSPy's parse_value for the field's type
        self.candidates: list[Schema] | None = None
        self.definitions: Schema = {}
        self.adapter: Any = None

    def prepare(self) -> list[Schema]:
        """The choices, built once (pydantic's errors for a type without a schema escape)."""
        if self.candidates is None:
            from pydantic import TypeAdapter

            self.adapter = TypeAdapter(self.field.annotation)
            schema: Schema = self.adapter.json_schema(by_alias=False)
            self.definitions = schema.get("$defs", {})
            self.candidates = [schema, *schema.get("anyOf", [])]
        return self.candidates

    def read(self, elements: list[ET.Element]) -> Any:
        """The field's value from its elements, as ``XMLAdapter.parse`` computes it; raises
        ``ValueError`` (pydantic's ValidationError among them) when no choice fits."""
        if self.is_str and len(elements) == 1 and not len(elements[0]):
            return (elements[0].text or "").strip()  # what the schema-guided steps give
        import pydantic

        value: Any = None
        error: ValueError | None = None
        for candidate in self.prepare():
            try:
                value = _value(elements, candidate, self.definitions)
                try:
                    return self.parse(value)
                except pydantic.ValidationError:
                    return self.adapter.validate_python(value, by_name=True)
            except ValueError as exc:
                error = exc
        raise ValueError(f"with value {value!r}: {type(error).__name__}: {error}") from error


def xml_reader(reply: ReplyParser) -> Callable[[str], dict[str, Any]]:
    """``XMLAdapter.parse`` for ``reply``'s output fields."""
    fields = {f.name: XMLField(f, reply.parsers[f.name]) for f in reply.fields}

    def parse_xml(completion: str) -> dict[str, Any]:
        adapter = "XMLAdapter"
        try:
            elements = reply_elements(completion)
        except ET.ParseError as exc:
            raise ParseError(
                f"Failed to parse XML: {exc}", adapter_name=adapter, lm_response=completion
            ) from exc
        except Exception as exc:  # e.g. a lone surrogate: DSPy fails outright
            raise UnrecoverableParseError(
                f"{type(exc).__name__}: {exc}", adapter_name=adapter, lm_response=completion
            ) from exc
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name not in elements:
                continue
            try:
                field.prepare()
                values[name] = field.read(elements[name])
            except ValueError as exc:
                if field.candidates is None:  # no schema: DSPy fails outright
                    raise UnrecoverableParseError(
                        f"failed to parse field {name}: {type(exc).__name__}: {exc}",
                        adapter_name=adapter,
                        lm_response=completion,
                    ) from exc
                raise ParseError(
                    f"failed to parse field {name} {exc}",
                    adapter_name=adapter,
                    lm_response=completion,
                    parsed_result=values,
                ) from exc
            except Exception as exc:  # DSPy lets these escape: no JSON fallback
                raise UnrecoverableParseError(
                    f"failed to parse field {name}: {type(exc).__name__}: {exc}",
                    adapter_name=adapter,
                    lm_response=completion,
                    parsed_result=values,
                ) from exc
        return reply.complete(adapter, completion, values)

    return parse_xml
