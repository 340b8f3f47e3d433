"""The :class:`Field` of a native signature and DSPy's naming helpers for it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import msgspec

FieldKind = Literal["input", "output"]

_CAMEL = re.compile("(.)([A-Z][a-z]+)")
_CAMEL2 = re.compile("([a-z0-9])([A-Z])")
_LETTER_DIGIT = re.compile(r"([a-zA-Z])(\d)")
_DIGIT_LETTER = re.compile(r"(\d)([a-zA-Z])")


def infer_prefix(name: str) -> str:
    """DSPy's ``infer_prefix``: ``"camelCase_text2x"`` -> ``"Camel Case Text 2 X"`` (no colon)."""
    s1 = _CAMEL.sub(r"\1_\2", name)
    intermediate = _CAMEL2.sub(r"\1_\2", s1)
    spaced = _LETTER_DIGIT.sub(r"\1_\2", intermediate)
    spaced = _DIGIT_LETTER.sub(r"\1_\2", spaced)
    return " ".join(w if w.isupper() else w.capitalize() for w in spaced.split("_"))


def default_desc(name: str) -> str:
    """The description DSPy stores when none was given: ``"${name}"``."""
    return f"${{{name}}}"


class Field(msgspec.Struct, frozen=True, kw_only=True):
    """One input or output field of a :class:`~dspex.signature.Signature`.

    ``desc`` and ``prefix`` hold exactly what DSPy stores in ``json_schema_extra`` (``"${name}"``
    and ``"Name:"`` when not given). Build fields with :meth:`input` / :meth:`output`, which fill
    those in.
    """

    name: str
    kind: FieldKind
    annotation: Any = str
    desc: str
    prefix: str
    constraints: str | None = None
    """Human-readable pydantic constraints (``"greater than: 0"``), shown in the system message."""
    type_undefined: bool | None = None
    """DSPy's ``IS_TYPE_UNDEFINED`` marker (``None``: absent, as on string signatures' outputs)."""
    default: Any = msgspec.UNSET
    default_factory: Callable[[], Any] | None = None

    @classmethod
    def input(
        cls,
        name: str,
        annotation: Any = str,
        *,
        desc: str | None = None,
        prefix: str | None = None,
        constraints: str | None = None,
        default: Any = msgspec.UNSET,
        default_factory: Callable[[], Any] | None = None,
    ) -> Field:
        """An input field, with DSPy's default ``desc`` and ``prefix`` when not given."""
        return cls._make(
            "input", name, annotation, desc, prefix, constraints, default, default_factory
        )

    @classmethod
    def output(
        cls,
        name: str,
        annotation: Any = str,
        *,
        desc: str | None = None,
        prefix: str | None = None,
        constraints: str | None = None,
        default: Any = msgspec.UNSET,
        default_factory: Callable[[], Any] | None = None,
    ) -> Field:
        """An output field, with DSPy's default ``desc`` and ``prefix`` when not given."""
        return cls._make(
            "output", name, annotation, desc, prefix, constraints, default, default_factory
        )

    @classmethod
    def _make(
        cls,
        kind: FieldKind,
        name: str,
        annotation: Any,
        desc: str | None,
        prefix: str | None,
        constraints: str | None,
        default: Any,
        default_factory: Callable[[], Any] | None,
    ) -> Field:
        return cls(
            name=name,
            kind=kind,
            annotation=annotation,
            desc=default_desc(name) if desc is None else desc,
            prefix=infer_prefix(name) + ":" if prefix is None else prefix,
            constraints=constraints,
            default=default,
            default_factory=default_factory,
        )

    @property
    def description(self) -> str:
        """The description as shown to the LM (``""`` when only DSPy's placeholder is stored)."""
        return "" if self.desc == default_desc(self.name) else self.desc

    @property
    def required(self) -> bool:
        """True when the field has neither a default nor a default factory (pydantic's rule)."""
        return self.default is msgspec.UNSET and self.default_factory is None

    def default_value(self) -> Any:
        """The field's default (calling the factory); only meaningful when not :attr:`required`."""
        if self.default_factory is not None:
            return self.default_factory()
        return None if self.default is msgspec.UNSET else self.default
