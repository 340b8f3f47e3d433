"""How DSPy 3.4.1 describes types to the LM (``dspy/adapters/utils.py``), ported.

Everything here runs once per signature (adapter templates are cached), so the ports stay literal
rather than fast. pydantic is imported only for types that need a JSON schema.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union, get_args, get_origin

from dspex._dspy_import import imported_class
from dspex.signature import Field


def annotation_name(annotation: Any) -> str:
    """DSPy's ``get_annotation_name``: ``Optional[str]`` -> ``Union[str, NoneType]``."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is types.UnionType:
        origin = Union
    if origin is None:
        if is_reasoning(annotation):  # DSPy names it as ChainOfThought's old str field
            return "str"
        if hasattr(annotation, "__name__"):
            return str(annotation.__name__)
        return str(annotation)
    if origin is Literal:
        args_str = ", ".join(
            _quoted_literal(a) if isinstance(a, str) else annotation_name(a) for a in args
        )
    else:
        args_str = ", ".join(annotation_name(a) for a in args)
    return f"{annotation_name(origin)}[{args_str}]"


def _quoted_literal(s: str) -> str:
    has_single = "'" in s
    has_double = '"' in s
    if has_single and not has_double:
        return f'"{s}"'
    if has_double and not has_single:
        return f"'{s}'"
    if has_single and has_double:
        escaped = s.replace("'", "\\'")
        return f"'{escaped}'"
    return f"'{s}'"


def allows_none(annotation: Any) -> bool:
    """DSPy's ``annotation_allows_none``: ``str | None``, ``Optional[int]``, ``None``."""
    if annotation is None or annotation is type(None):
        return True
    origin = get_origin(annotation)
    args = get_args(annotation)
    from typing import Annotated

    if origin is Annotated:
        return bool(args) and allows_none(args[0])
    if origin is Union or origin is types.UnionType:
        return any(allows_none(a) for a in args)
    return False


def _is_subclass(annotation: Any, base: type) -> bool:
    try:
        return inspect.isclass(annotation) and issubclass(annotation, base)
    except TypeError:
        return False


def json_schema(annotation: Any) -> dict[str, Any]:
    """pydantic's JSON schema of ``annotation`` with ``"type"`` keys first, as DSPy renders it."""
    import pydantic

    def move_type_to_front(d: Any) -> Any:
        if isinstance(d, Mapping):
            return {
                k: move_type_to_front(v)
                for k, v in sorted(d.items(), key=lambda item: (item[0] != "type", item[0]))
            }
        if isinstance(d, list):
            return [move_type_to_front(item) for item in d]
        return d

    schema: dict[str, Any] = move_type_to_front(pydantic.TypeAdapter(annotation).json_schema())
    return schema


def type_note(field: Field) -> str:
    """DSPy's ``translate_field_type``: ``{name}`` plus the output type note."""
    t = field.annotation
    if field.kind == "input" or t is str or is_reasoning(t):
        desc = ""
    elif t is bool:
        desc = "must be True or False"
    elif t in (int, float):
        desc = f"must be a single {t.__name__} value"
    elif _is_subclass(t, enum.Enum):
        desc = f"must be one of: {'; '.join(str(member.value) for member in t)}"
    elif hasattr(t, "__origin__") and t.__origin__ is Literal:
        desc = (
            "must exactly match (no extra characters) one of: "
            f"{'; '.join([str(x) for x in t.__args__])}"
        )
    elif _is_code(t) and t.description():  # its type description says it all
        desc = ""
    else:
        desc = f"must adhere to the JSON schema: {json.dumps(json_schema(t), ensure_ascii=False)}"
    note = (" " * 8) + f"# note: the value you produce {desc}" if desc else ""
    return f"{{{field.name}}}{note}"


def field_descriptions(fields: Iterable[Field]) -> str:
    """DSPy's ``get_field_description_string``: the numbered ``Your ... fields are`` block."""
    lines = []
    for idx, f in enumerate(fields):
        line = f"{idx + 1}. `{f.name}` ({annotation_name(f.annotation)}): {f.description}"
        for custom in dspy_types_in(f.annotation):
            if described := custom.description():
                line += f"\n    Type description of {annotation_name(custom)}: {described}"
        if f.constraints:
            line += f"\nConstraints: {f.constraints}"
        lines.append(line)
    return "\n".join(lines).strip()


def reminder_type_info(field: Field) -> str:
    """The ``(must be formatted as a valid Python T)`` note of the user-message reminder (for
    ``dspy.ToolCalls``, the JSON shape it must have)."""
    if is_tool_calls(field.annotation):
        return ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'
    if field.annotation is not str:
        return f" (must be formatted as a valid Python {annotation_name(field.annotation)})"
    return ""


def dspy_types_in(annotation: Any) -> list[Any]:
    """Every ``dspy.Type`` (Image, Code, Tool, ...) inside ``annotation``, as DSPy finds them.
    Imports nothing: without DSPy's ``Type`` class defined, no annotation can hold one."""
    dspy_type: Any = imported_class("dspy.adapters.types.base_type", "Type")
    if dspy_type is None:
        return []
    return list(dspy_type.extract_custom_type_from_annotation(annotation))


def dspy_type_in(annotation: Any) -> Any:
    """The first ``dspy.Type`` inside ``annotation`` that the native adapters do not implement,
    else ``None``. Implemented: the types whose messages are their ``format`` (a text, or
    content parts), ``description`` and pydantic validation alone: ``dspy.Code``, ``Image``,
    ``Audio``, ``File``, ``Document``, ``Reasoning`` and ``Citations`` (on the LMs without
    their own reasoning or citations: see :func:`~dspex.backends.native._catalog.lm_feature`),
    ``Tool`` and ``ToolCalls`` (as text, or through the LM's function calling: see
    :func:`~dspex.backends.native._catalog.function_calling`) and user-defined types."""
    return next((t for t in dspy_types_in(annotation) if not _native_type(t)), None)


_NATIVE_BUILTINS = (
    ("dspy.adapters.types.base_type", "Type"),
    ("dspy.adapters.types.image", "Image"),
    ("dspy.adapters.types.audio", "Audio"),
    ("dspy.adapters.types.file", "File"),
    ("dspy.adapters.types.document", "Document"),
    ("dspy.adapters.types.reasoning", "Reasoning"),
    ("dspy.adapters.types.citation", "Citations"),
    ("dspy.adapters.types.tool", "Tool"),
    ("dspy.adapters.types.tool", "ToolCalls"),
)


def _native_type(custom: Any) -> bool:
    """Whether every DSPy class ``custom`` is built on is one native implements (any
    ``dspy.Code``, ``Code["java"]`` included)."""
    if _is_code(custom):
        return True
    base: Any = imported_class("dspy.adapters.types.base_type", "Type")
    native = {imported_class(module, name) for module, name in _NATIVE_BUILTINS}
    return not any(
        cls.__module__.split(".")[0] == "dspy" and cls not in native
        for cls in custom.__mro__
        if base is not None and _is_subclass(cls, base)
    )


def is_citations(annotation: Any) -> bool:
    """Whether ``annotation`` is DSPy's ``Citations`` itself."""
    citations = imported_class("dspy.adapters.types.citation", "Citations")
    return citations is not None and annotation is citations


def is_tool_calls(annotation: Any) -> bool:
    """Whether ``annotation`` is ``dspy.ToolCalls`` itself."""
    tool_calls = imported_class("dspy.adapters.types.tool", "ToolCalls")
    return tool_calls is not None and annotation is tool_calls


def is_tools(annotation: Any) -> bool:
    """Whether ``annotation`` is ``dspy.Tool`` or ``list[dspy.Tool]`` (DSPy's tools input)."""
    tool = imported_class("dspy.adapters.types.tool", "Tool")
    if tool is None:
        return False
    return annotation is tool or (
        get_origin(annotation) is list and get_args(annotation)[:1] == (tool,)
    )


def is_reasoning(annotation: Any) -> bool:
    """Whether ``annotation`` is ``dspy.Reasoning`` itself (not a type built on it)."""
    reasoning = imported_class("dspy.adapters.types.reasoning", "Reasoning")
    return reasoning is not None and annotation is reasoning


def _is_code(annotation: Any) -> bool:
    code = imported_class("dspy.adapters.types.code", "Code")
    return code is not None and _is_subclass(annotation, code)
