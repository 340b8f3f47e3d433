"""Conversion between native signatures and ``dspy.Signature`` classes (imports dspy lazily)."""

from __future__ import annotations

import inspect
import threading
import weakref
from typing import Any

import msgspec

from dspex._dspy_import import imported_class, load_dspy
from dspex._signature._field import Field, FieldKind, default_desc, infer_prefix
from dspex._signature._model import Signature
from dspex.errors import SignatureError

_IS_TYPE_UNDEFINED = "IS_TYPE_UNDEFINED"
_FROM_DSPY: weakref.WeakKeyDictionary[type, tuple[Any, Signature]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _is_dspy_signature(cls: object) -> bool:
    base = imported_class("dspy.signatures.signature", "Signature")  # never imports dspy
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _fingerprint(cls: Any) -> Any:
    # DSPy classes are mutable (``instructions`` has a setter); re-read when any of this changes.
    return (
        cls.__doc__,
        tuple(
            (name, id(info), info.annotation, tuple((info.json_schema_extra or {}).items()))
            for name, info in cls.model_fields.items()
        ),
    )


def from_dspy(cls: type) -> Signature:
    """The native signature equivalent to ``cls``; cached until the class changes."""
    if not _is_dspy_signature(cls):
        raise SignatureError(f"expected a dspy.Signature class, got {cls!r}")
    try:
        fingerprint = _fingerprint(cls)
        cached = _FROM_DSPY.get(cls)
    except Exception as exc:
        raise SignatureError(f"cannot read dspy signature {cls!r}: {exc}") from None
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    sig = _convert(cls)
    with _LOCK:
        _FROM_DSPY[cls] = (fingerprint, sig)
    return sig


def _convert(cls: Any) -> Signature:
    from pydantic_core import PydanticUndefined

    fields: dict[FieldKind, list[Field]] = {"input": [], "output": []}
    for kind, infos in (("input", cls.input_fields), ("output", cls.output_fields)):
        for name, info in infos.items():
            extra = info.json_schema_extra or {}
            constraints = extra.get("constraints")
            undefined = extra.get(_IS_TYPE_UNDEFINED)
            fields[kind].append(  # type: ignore[index]
                Field(
                    name=name,
                    kind=kind,  # type: ignore[arg-type]
                    annotation=str if info.annotation is None else info.annotation,
                    desc=extra.get("desc", default_desc(name)),
                    prefix=extra.get("prefix", infer_prefix(name) + ":"),
                    constraints=constraints if isinstance(constraints, str) else None,
                    type_undefined=undefined if isinstance(undefined, bool) else None,
                    default=msgspec.UNSET if info.default is PydanticUndefined else info.default,
                    default_factory=info.default_factory,
                )
            )
    return Signature._trusted(
        tuple(fields["input"]),
        tuple(fields["output"]),
        cls.instructions,
        cls.__name__,
        keep_empty=True,
        clean=False,
    )


def _stable_doc(instructions: str) -> str:
    # DSPy reports ``inspect.cleandoc(__doc__)``; choose a __doc__ that cleans to exactly this text
    # (and truthy: pydantic's create_model drops an empty docstring -> default instructions).
    if not instructions:
        return "\n"
    if inspect.cleandoc(instructions) == instructions:
        return instructions
    return "\n" + instructions


def to_dspy(sig: Signature) -> type:
    """Build the ``dspy.Signature`` class equivalent to ``sig`` (waits for dspex's one shared
    import of DSPy)."""
    import pydantic

    dspy = load_dspy()
    fields: dict[str, tuple[Any, Any]] = {}
    for f in (*sig.inputs, *sig.outputs):
        extra: dict[str, Any] = {}
        if f.type_undefined is not None:
            extra[_IS_TYPE_UNDEFINED] = f.type_undefined
        extra["__dspy_field_type"] = f.kind
        if f.constraints is not None:
            extra["constraints"] = f.constraints
        extra["prefix"] = f.prefix
        extra["desc"] = f.desc
        kwargs: dict[str, Any] = {}
        if f.default is not msgspec.UNSET:
            kwargs["default"] = f.default
        if f.default_factory is not None:
            kwargs["default_factory"] = f.default_factory
        fields[f.name] = (f.annotation, pydantic.Field(json_schema_extra=extra, **kwargs))
    try:
        cls: type = dspy.Signature(fields, _stable_doc(sig.instructions), signature_name=sig.name)
    except Exception as exc:
        raise SignatureError(f"DSPy rejected the signature: {exc}") from exc
    return cls
