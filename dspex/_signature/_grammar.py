"""DSPy 3.4.1's string-signature grammar, with character positions for every problem.

DSPy wraps each side of ``"inputs -> outputs"`` in ``def f(...): pass``, parses it with :mod:`ast`
and turns each annotation into a type object (``_parse_signature``, ``_parse_field_string``,
``_parse_type_node`` in ``dspy/signatures/signature.py``). This module does the same walk, so it
accepts exactly what DSPy accepts with the same fields and types, but reports every failure as a
:class:`~dspex.errors.SignatureError` with the offending position, and collects warnings for input
that DSPy silently drops or rewrites.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import keyword
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin

import msgspec

from dspex._dspy_import import load_dspy
from dspex._signature._names import name_problem
from dspex.errors import SignatureError

_WRAP = "def f("
_NEWLINES = re.compile(r"\r\n|\r|\n")
_IDENT = re.compile(r"\w+")
_NONE_TYPE = type(None)
_BUILTIN_TYPES = (
    int,
    str,
    float,
    bool,
    list,
    tuple,
    dict,
    set,
    frozenset,
    complex,
    bytes,
    bytearray,
)
# make_signature's isinstance check (typing's private alias classes are reached by name).
_TYPE_CLASSES: tuple[type, ...] = (
    type,
    typing._GenericAlias,  # type: ignore[attr-defined]
    types.GenericAlias,
    typing._SpecialForm,
    types.UnionType,
)
_CUSTOM_TYPE_NAME = re.compile(r":\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_SIMPLE_LEAVES: tuple[Any, ...] = (
    str,
    int,
    float,
    bool,
    bytes,
    _NONE_TYPE,
    typing.Any,
    list,
    dict,
    tuple,
    set,
    frozenset,
)


class ParsedField(NamedTuple):
    """One field as DSPy would build it from the string (before prefix/desc are filled in)."""

    name: str
    annotation: Any
    type_undefined: bool
    default: Any
    default_factory: Callable[[], Any] | None
    position: int


class ParsedText(NamedTuple):
    """A parsed signature string: fields per side and ``(message, position)`` warnings."""

    inputs: list[ParsedField]
    outputs: list[ParsedField]
    warnings: list[tuple[str, int]]


class _Fail(Exception):
    """Internal: a type annotation failed at ``node``."""

    def __init__(self, message: str, node: ast.AST | None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


class _Locator:
    """Maps positions in the wrapped code ``def f(<segment>): pass`` back to the signature."""

    def __init__(self, code: str, seg_start: int, seg_len: int) -> None:
        self.code = code
        self.seg_start = seg_start
        self.seg_len = seg_len
        self.line_starts = [0] + [m.end() for m in _NEWLINES.finditer(code)]

    def _line_start(self, lineno: int) -> int:
        if 0 < lineno <= len(self.line_starts):
            return self.line_starts[lineno - 1]
        return 0

    def at_chars(self, lineno: int, col: int) -> int:
        """Position of a 0-based character column (SyntaxError offsets, minus one)."""
        return self._clamp(self._line_start(lineno) + col)

    def at_node(self, node: ast.AST) -> int:
        """Position of an AST node (``col_offset`` counts UTF-8 bytes)."""
        lineno = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        start = self._line_start(lineno)
        end = self.line_starts[lineno] if lineno < len(self.line_starts) else len(self.code)
        line = self.code[start:end]
        chars = len(line.encode("utf-8", "surrogatepass")[:col].decode("utf-8", "ignore"))
        return self._clamp(start + chars)

    def _clamp(self, code_index: int) -> int:
        pos = self.seg_start + code_index - len(_WRAP)
        return max(self.seg_start, min(pos, self.seg_start + self.seg_len))


def default_names(custom_types: Mapping[str, Any] | None) -> dict[str, Any]:
    """The namespace DSPy resolves annotation names in.

    Without custom types: ``typing``'s namespace plus ``NoneType``. With custom types DSPy uses
    ``typing``'s namespace plus those types and (a DSPy quirk, mirrored) *no* ``NoneType``.
    """
    names = dict(typing.__dict__)
    if custom_types:
        names.update(custom_types)
    else:
        names["NoneType"] = _NONE_TYPE
    return names


def detect_custom_types(text: str, frame: FrameType | None) -> dict[str, Any] | None:
    """DSPy's ``_detect_custom_types_from_caller``: find annotation names in the caller's frames.

    Only the first name after each ``:`` is looked for, as in DSPy; names found in ``typing`` or
    the builtins are skipped. Returns ``None`` when nothing was needed or found.
    """
    type_names = _CUSTOM_TYPE_NAME.findall(text)
    if not type_names:
        return None
    needed: set[str] = set()
    for type_name in type_names:
        base = type_name.split(".")[0]
        if base not in typing.__dict__ and base not in builtins.__dict__:
            needed.add(base)
    if not needed:
        return None
    found: dict[str, Any] = {}
    count = 0
    while frame is not None and needed and count < 100:
        count += 1
        for name in list(needed):
            if name in frame.f_locals:
                found[name] = frame.f_locals[name]
                needed.discard(name)
            elif frame.f_globals and name in frame.f_globals:
                found[name] = frame.f_globals[name]
                needed.discard(name)
        frame = frame.f_back
    return found or None


def parse_text(text: str, custom_types: Mapping[str, Any] | None) -> ParsedText:
    """Parse ``text`` exactly as DSPy's ``make_signature`` would, or raise ``SignatureError``."""
    if not isinstance(text, str):
        raise SignatureError(f"a signature string must be a str, not {type(text).__name__}")
    arrows = [m.start() for m in re.finditer("->", text)]
    if len(arrows) != 1:
        if not arrows:
            raise SignatureError(
                "a signature needs exactly one '->' between inputs and outputs, found none",
                signature=text,
                position=len(text),
            )
        raise SignatureError(
            f"a signature needs exactly one '->' between inputs and outputs, found {len(arrows)}",
            signature=text,
            position=arrows[1],
        )
    arrow = arrows[0]
    warnings: list[tuple[str, int]] = []
    inputs = _parse_side(text, text[:arrow], 0, "input", custom_types, warnings)
    outputs = _parse_side(text, text[arrow + 2 :], arrow + 2, "output", custom_types, warnings)

    input_names = {f.name for f in inputs}
    for field in outputs:
        if field.name in input_names:
            raise SignatureError(
                f"field {field.name!r} is both an input and an output; "
                "input and output fields must have distinct names",
                signature=text,
                position=field.position,
            )
    inputs = _dedupe(text, inputs, "input", warnings)
    outputs = _dedupe(text, outputs, "output", warnings)
    for field in (*inputs, *outputs):
        problem = name_problem(field.name)
        if problem is not None:
            message, is_error = problem
            if is_error:
                raise SignatureError(message, signature=text, position=field.position)
            warnings.append((message, field.position))
    if not outputs:
        warnings.append(("the signature has no output fields", len(text)))
    return ParsedText(inputs, outputs, warnings)


def _dedupe(
    text: str, fields: list[ParsedField], side: str, warnings: list[tuple[str, int]]
) -> list[ParsedField]:
    # DSPy collects fields in a dict: a repeated name keeps its first place and its last type.
    by_name: dict[str, int] = {}
    result: list[ParsedField] = []
    for field in fields:
        if field.name in by_name:
            warnings.append(
                (
                    f"{side} field {field.name!r} is repeated; DSPy silently keeps one field "
                    "(first position, last type)",
                    field.position,
                )
            )
            index = by_name[field.name]
            result[index] = field._replace(position=result[index].position)
        else:
            by_name[field.name] = len(result)
            result.append(field)
    return result


def _parse_side(
    text: str,
    segment: str,
    seg_start: int,
    side: str,
    custom_types: Mapping[str, Any] | None,
    warnings: list[tuple[str, int]],
) -> list[ParsedField]:
    code = f"{_WRAP}{segment}): pass"
    loc = _Locator(code, seg_start, len(segment))
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise _syntax_error(text, segment, seg_start, side, exc, loc) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SignatureError(
            f"the {side} fields cannot be parsed: {exc}", signature=text, position=seg_start
        ) from None
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    _warn_dropped(args, fn, tree, loc, side, warnings)

    fields: list[ParsedField] = []
    for arg in args.args:
        position = loc.at_node(arg)
        if arg.annotation is None:
            fields.append(ParsedField(arg.arg, str, True, msgspec.UNSET, None, position))
            continue
        names = default_names(custom_types)
        try:
            raw = _resolve(arg.annotation, names)
        except _Fail as fail:
            node_pos = loc.at_node(fail.node) if fail.node is not None else position
            raise SignatureError(
                f"invalid type for {side} field {arg.arg!r}: {fail.message}",
                signature=text,
                position=node_pos,
            ) from None
        except RecursionError:
            raise SignatureError(
                f"the type of {side} field {arg.arg!r} is nested too deeply",
                signature=text,
                position=loc.at_node(arg.annotation),
            ) from None
        ann_pos = loc.at_node(arg.annotation)
        fields.append(_finish_type(text, arg.arg, side, raw, ann_pos, position, warnings))
    return fields


def _finish_type(
    text: str,
    name: str,
    side: str,
    raw: Any,
    ann_pos: int,
    position: int,
    warnings: list[tuple[str, int]],
) -> ParsedField:
    """make_signature's checks plus what pydantic does to the annotation when building the class."""
    if raw is None:
        warnings.append(
            (f"{side} field {name!r} is annotated None, which DSPy reads as str", ann_pos)
        )
        return ParsedField(name, str, False, msgspec.UNSET, None, position)
    if not isinstance(raw, _TYPE_CLASSES):
        raise SignatureError(
            f"the annotation of {side} field {name!r} is not a type: {raw!r} "
            f"(of type {type(raw).__name__})",
            signature=text,
            position=ann_pos,
        )
    default: Any = msgspec.UNSET
    factory: Callable[[], Any] | None = None
    annotation = raw
    if _is_simple(raw):
        return ParsedField(name, annotation, False, default, factory, position)
    try:
        annotation, default, factory = _pydantic_field(raw)
    except Exception as exc:
        raise SignatureError(
            f"pydantic cannot use the type of {side} field {name!r}: {_first_line(exc)}",
            signature=text,
            position=ann_pos,
        ) from None
    return ParsedField(name, annotation, False, default, factory, position)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _pydantic_field(tp: Any) -> tuple[Any, Any, Callable[[], Any] | None]:
    """Build the field as pydantic would; return its final annotation, default and factory."""
    import pydantic
    from pydantic.fields import FieldInfo
    from pydantic_core import PydanticUndefined

    pydantic.create_model("StringSignature", probe=(tp, pydantic.Field()))
    info = FieldInfo.from_annotated_attribute(tp, pydantic.Field())
    default = msgspec.UNSET if info.default is PydanticUndefined else info.default
    factory = info.default_factory
    return info.annotation, default, factory  # type: ignore[return-value]


def _is_simple(tp: Any) -> bool:
    """True for types pydantic certainly accepts unchanged (so no pydantic probe is needed)."""
    if any(tp is leaf for leaf in _SIMPLE_LEAVES):
        return True
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        return all(type(a) in (str, int, bool, _NONE_TYPE) for a in args)
    if origin is Union or origin is types.UnionType:
        return all(_is_simple(a) for a in args)
    if origin in (list, set, frozenset):
        return len(args) == 1 and _is_simple(args[0])
    if origin is dict:
        return len(args) == 2 and _is_simple(args[0]) and _is_simple(args[1])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _is_simple(args[0])
        return bool(args) and all(_is_simple(a) for a in args)
    return False


def _warn_dropped(
    args: ast.arguments,
    fn: ast.FunctionDef,
    tree: ast.Module,
    loc: _Locator,
    side: str,
    warnings: list[tuple[str, int]],
) -> None:
    for arg in args.posonlyargs:
        warnings.append(
            (f"{side} field {arg.arg!r} before '/' is silently dropped by DSPy", loc.at_node(arg))
        )
    if args.vararg is not None:
        warnings.append(
            (f"'*{args.vararg.arg}' is silently dropped by DSPy", loc.at_node(args.vararg))
        )
    for arg in args.kwonlyargs:
        warnings.append(
            (f"{side} field {arg.arg!r} after '*' is silently dropped by DSPy", loc.at_node(arg))
        )
    if args.kwarg is not None:
        warnings.append(
            (f"'**{args.kwarg.arg}' is silently dropped by DSPy", loc.at_node(args.kwarg))
        )
    for node in args.defaults:
        warnings.append(
            ("a default value in a signature string is ignored by DSPy", loc.at_node(node))
        )
    for kw_default in args.kw_defaults:
        if kw_default is not None:
            warnings.append(
                (
                    "a default value in a signature string is ignored by DSPy",
                    loc.at_node(kw_default),
                )
            )
    extra: ast.AST | None = None
    if len(tree.body) > 1:
        extra = tree.body[1]
    elif len(fn.body) != 1 or not isinstance(fn.body[0], ast.Pass) or fn.returns is not None:
        extra = fn.body[0]
    if extra is not None:
        warnings.append(
            (f"text after the {side} field list is ignored by DSPy", loc.at_node(extra))
        )


def _syntax_error(
    text: str, segment: str, seg_start: int, side: str, exc: SyntaxError, loc: _Locator
) -> SignatureError:
    if exc.lineno is None or exc.offset is None:
        nul = segment.find("\x00")
        position = seg_start + nul if nul >= 0 else seg_start
        return SignatureError(
            f"invalid {side} fields: {exc.msg}", signature=text, position=position
        )
    position = loc.at_chars(exc.lineno, exc.offset - 1)
    match = _IDENT.match(text, position)
    word = match.group(0) if match else ""
    if keyword.iskeyword(word):
        message = f"{word!r} is a Python keyword and cannot be a field name"
    elif "never closed" in exc.msg and "#" in segment:
        position = seg_start + segment.index("#")
        message = "'#' starts a Python comment, which swallows the rest of the field list"
    else:
        message = f"invalid {side} fields: {exc.msg}"
    return SignatureError(message, signature=text, position=position)


def _resolve_name(name: str, names: dict[str, Any], node: ast.AST) -> Any:
    if name in names:
        return names[name]
    for t in _BUILTIN_TYPES:
        if t.__name__ == name:
            return t
    # Like DSPy, import a module of that name (``dspy.Image``, ``datetime.date``); DSPy and
    # LiteLLM only through dspex's one shared import (two imports at once break DSPy's).
    try:
        if name in ("dspy", "litellm"):
            load_dspy()
        module = importlib.import_module(name)
    except ImportError:
        pass
    except Exception as exc:
        raise _Fail(f"importing {name!r} failed: {_first_line(exc)}", node) from None
    else:
        names[name] = module
        return module
    raise _Fail(f"unknown name {name!r}", node)


def _resolve(node: ast.AST, names: dict[str, Any]) -> Any:
    """Port of DSPy's ``_parse_type_node``; every failure is a ``_Fail`` naming its node."""
    if isinstance(node, ast.Name):
        return _resolve_name(node.id, names, node)

    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, names)
        attr = node.attr
        try:
            if hasattr(base, attr):
                return getattr(base, attr)
        except Exception as exc:
            raise _Fail(f"reading {attr!r} failed: {_first_line(exc)}", node) from None
        if isinstance(node.value, ast.Name):
            full_name = f"{node.value.id}.{attr}"
            if full_name in names:
                return names[full_name]
        raise _Fail(f"unknown attribute {attr!r} on {base!r}", node)

    if isinstance(node, ast.Subscript):
        base_type = _resolve(node.value, names)
        slice_node = node.slice
        if isinstance(slice_node, ast.Tuple):
            arg_types = tuple(_resolve(elt, names) for elt in slice_node.elts)
        else:
            arg_types = (_resolve(slice_node, names),)
        try:
            if base_type is typing.Union:
                return typing.Union[arg_types]  # noqa: UP007 - the same object DSPy builds
            if base_type is typing.Optional:
                if len(arg_types) != 1:
                    raise _Fail("Optional must have exactly one type argument", node)
                return typing.Optional[arg_types[0]]  # noqa: UP045
            return base_type[arg_types]
        except _Fail:
            raise
        except Exception as exc:
            raise _Fail(_first_line(exc), node) from None

    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left = _resolve(node.left, names)
        right = _resolve(node.right, names)
        try:
            if right is _NONE_TYPE:
                return typing.Optional[left]  # noqa: UP045
            if left is _NONE_TYPE:
                return typing.Optional[right]  # noqa: UP045
            return typing.Union[left, right]  # noqa: UP007
        except Exception as exc:
            raise _Fail(_first_line(exc), node) from None

    if isinstance(node, ast.Tuple):
        return tuple(_resolve(elt, names) for elt in node.elts)

    if isinstance(node, ast.Constant):
        return node.value

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Field":
        keys = [kw.arg for kw in node.keywords]
        values = [
            kw.value.value if isinstance(kw.value, ast.Constant) else _resolve(kw.value, names)
            for kw in node.keywords
        ]
        try:
            import pydantic

            return pydantic.Field(**dict(zip(keys, values, strict=False)))  # type: ignore[arg-type]
        except Exception as exc:
            raise _Fail(f"Field(...) failed: {_first_line(exc)}", node) from None

    raise _Fail(
        f"unsupported syntax in a type annotation ({type(node).__name__}); "
        "use a class-based signature for this type",
        node,
    )


def caller_frame(depth: int) -> FrameType | None:
    """The frame ``depth`` levels above the caller of this function (None where unsupported)."""
    try:
        return sys._getframe(depth + 1)
    except (AttributeError, ValueError):
        return None
