"""The native, immutable :class:`Signature`."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar, Union

from dspex._signature._field import Field, FieldKind, default_desc
from dspex._signature._grammar import caller_frame, detect_custom_types, parse_text
from dspex._signature._names import name_problem
from dspex.errors import SignatureError

_T = TypeVar("_T")
SignatureLike = Union["Signature", str, type]
"""What every dspex API accepts as a signature: a :class:`Signature`, DSPy's string form, or a
``dspy.Signature`` class."""


class SignatureWarning(UserWarning):
    """A signature DSPy accepts but that is probably a mistake (a repeated or dropped field...)."""


def default_instructions(inputs: Iterable[Field], outputs: Iterable[Field]) -> str:
    """DSPy's default instructions: ``Given the fields `a`, `b`, produce the fields `c`.``."""
    ins = ", ".join(f"`{f.name}`" for f in inputs)
    outs = ", ".join(f"`{f.name}`" for f in outputs)
    return f"Given the fields {ins}, produce the fields {outs}."


class Signature:
    """An immutable DSPy signature: ordered input and output :class:`Field` s plus instructions.

    Build one with :meth:`parse` (DSPy's string form, cached), :meth:`from_dspy` (a
    ``dspy.Signature`` class) or the constructor; :meth:`to_dspy` builds the equivalent DSPy class.
    ``instructions`` holds what DSPy reports as ``Signature.instructions`` (cleandoc-ed).
    """

    __slots__ = (
        "_cache",
        "_fields",
        "_hash",
        "_input_names",
        "_inputs",
        "_instructions",
        "_name",
        "_output_names",
        "_outputs",
    )

    _inputs: tuple[Field, ...]
    _outputs: tuple[Field, ...]
    _input_names: tuple[str, ...]
    _output_names: tuple[str, ...]
    _instructions: str
    _name: str
    _fields: Mapping[str, Field]
    _cache: dict[Any, Any]
    _hash: int

    _REASONING: ClassVar[Field] = Field.output("reasoning", str, desc="${reasoning}")

    def __init__(
        self,
        inputs: Iterable[Field],
        outputs: Iterable[Field],
        instructions: str | None = None,
        *,
        name: str = "StringSignature",
    ) -> None:
        ins, outs = tuple(inputs), tuple(outputs)
        _check_fields(ins, outs)
        self._setup(ins, outs, instructions, name, keep_empty=True, clean=True)

    def _setup(
        self,
        inputs: tuple[Field, ...],
        outputs: tuple[Field, ...],
        instructions: str | None,
        name: str,
        *,
        keep_empty: bool,
        clean: bool,
    ) -> None:
        # DSPy's make_signature (string signatures, with_instructions, insert, delete, ...) passes
        # instructions to pydantic's create_model, which drops a falsy docstring: "" then means
        # "use the default instructions". Only class-based signatures can keep "".
        if instructions is None or (not instructions and not keep_empty):
            instructions = default_instructions(inputs, outputs)
        elif not isinstance(instructions, str):
            raise SignatureError(f"instructions must be a str, not {type(instructions).__name__}")
        elif clean:
            # DSPy reports cleandoc(__doc__); cleandoc is not idempotent, so derived signatures
            # (built from already-cleaned instructions) may change again, exactly as in DSPy.
            instructions = inspect.cleandoc(instructions)
        fields = {f.name: f for f in (*inputs, *outputs)}
        setter = object.__setattr__
        setter(self, "_inputs", inputs)
        setter(self, "_outputs", outputs)
        setter(self, "_input_names", tuple(f.name for f in inputs))
        setter(self, "_output_names", tuple(f.name for f in outputs))
        setter(self, "_instructions", instructions)
        setter(self, "_name", name)
        setter(self, "_fields", MappingProxyType(fields))
        setter(self, "_cache", {})
        setter(
            self, "_hash", hash((instructions, tuple((f.kind, f.name) for f in fields.values())))
        )

    @classmethod
    def _trusted(
        cls,
        inputs: tuple[Field, ...],
        outputs: tuple[Field, ...],
        instructions: str | None,
        name: str = "StringSignature",
        *,
        keep_empty: bool = False,
        clean: bool = True,
    ) -> Signature:
        self = cls.__new__(cls)
        self._setup(inputs, outputs, instructions, name, keep_empty=keep_empty, clean=clean)
        return self

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"Signature is immutable; cannot set {key!r}")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"Signature is immutable; cannot delete {key!r}")

    # -- read access -------------------------------------------------------------------------

    @property
    def inputs(self) -> tuple[Field, ...]:
        """Input fields, in order."""
        return self._inputs

    @property
    def outputs(self) -> tuple[Field, ...]:
        """Output fields, in order."""
        return self._outputs

    @property
    def instructions(self) -> str:
        """The instructions (DSPy's default ``Given the fields ...`` when none were given)."""
        return self._instructions

    @property
    def name(self) -> str:
        """The class name :meth:`to_dspy` uses (``StringSignature`` unless from a DSPy class)."""
        return self._name

    @property
    def fields(self) -> Mapping[str, Field]:
        """All fields by name, inputs first (read-only)."""
        return self._fields

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the input fields, in order."""
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the output fields, in order."""
        return self._output_names

    @property
    def signature(self) -> str:
        """The bare string form, ``"a, b -> c"`` (names only, like DSPy's ``signature``)."""
        return f"{', '.join(self.input_names)} -> {', '.join(self.output_names)}"

    def cached(self, key: Any, build: Callable[..., _T], *args: Any) -> _T:
        """Per-signature memo for derived artefacts (adapter templates): the first ``build(*args)``
        stored for ``key`` is returned from then on."""
        try:
            value: _T = self._cache[key]
        except KeyError:
            value = self._cache.setdefault(key, build(*args))
        return value

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Signature):
            return NotImplemented
        return (
            self._instructions == other._instructions
            and self._inputs == other._inputs
            and self._outputs == other._outputs
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        parts = [f"{f.name}: {_type_repr(f.annotation)}" for f in self._inputs]
        outs = [f"{f.name}: {_type_repr(f.annotation)}" for f in self._outputs]
        fields = f"{', '.join(parts)} -> {', '.join(outs)}"
        return f"Signature({fields}, instructions={self._instructions!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._inputs, self._outputs, self._instructions, self._name))

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def parse(
        cls,
        text: str,
        instructions: str | None = None,
        *,
        descriptions: Mapping[str, str] | None = None,
        custom_types: Mapping[str, Any] | None = None,
    ) -> Signature:
        """Parse DSPy's string form (``"context, question -> answer: float"``); cached.

        Accepts exactly what ``dspy.Signature(text, instructions)`` accepts, with the same fields
        and types. Names DSPy would look up in the caller's frames (custom types) are looked up
        the same way unless ``custom_types`` is given. ``descriptions`` maps field names to
        descriptions.
        Raises :class:`~dspex.errors.SignatureError` (with the position) where DSPy raises, and
        warns (:class:`SignatureWarning`) where DSPy silently accepts a likely mistake.
        """
        if custom_types is None and isinstance(text, str) and ":" in text:
            custom_types = detect_custom_types(text, caller_frame(1))
        desc_key = tuple(descriptions.items()) if descriptions else ()
        type_key = tuple(custom_types.items()) if custom_types else ()
        try:
            sig, found = _parse_cached(text, instructions, desc_key, type_key)
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            sig, found = _parse_uncached(text, instructions, desc_key, type_key)
        for message, position in found:
            warnings.warn(
                f"{message} (at position {position} in {text!r})", SignatureWarning, stacklevel=2
            )
        return sig

    @classmethod
    def from_dspy(cls, signature_cls: type) -> Signature:
        """The native equivalent of a ``dspy.Signature`` class (cached per class and state)."""
        from dspex._signature._dspy import from_dspy

        return from_dspy(signature_cls)

    def to_dspy(self) -> type:
        """Build an equivalent ``dspy.Signature`` class (imports dspy)."""
        from dspex._signature._dspy import to_dspy

        return to_dspy(self)

    # -- derived signatures (DSPy's classmethods, same semantics) ---------------------------

    def with_instructions(self, instructions: str) -> Signature:
        """The same fields with new instructions (``Signature.with_instructions``; as in DSPy,
        empty instructions mean the default ones)."""
        return Signature._trusted(self._inputs, self._outputs, instructions, self._name)

    def insert(self, index: int, field: Field) -> Signature:
        """Insert ``field`` at ``index`` among the inputs or outputs (``Signature.insert``).

        As in DSPy, negative indices count from the end (``-1`` appends) and inserting a name that
        already exists keeps that name's first position and the *later* field.
        """
        ins, outs = list(self._inputs), list(self._outputs)
        lst = ins if field.kind == "input" else outs
        if index < 0:
            index += len(lst) + 1
        if index < 0 or index > len(lst):
            raise SignatureError(
                f"invalid index {index} to insert {field.kind} field {field.name!r}: "
                f"must be in [0, {len(lst)}]"
            )
        lst.insert(index, field)
        merged: dict[str, Field] = {}
        for f in (*ins, *outs):
            merged[f.name] = f
        ordered = list(merged.values())
        new_ins = tuple(f for f in ordered if f.kind == "input")
        new_outs = tuple(f for f in ordered if f.kind == "output")
        return Signature._trusted(new_ins, new_outs, self._instructions)

    def prepend(self, field: Field) -> Signature:
        """Insert ``field`` first among its kind (``Signature.prepend``)."""
        return self.insert(0, field)

    def append(self, field: Field) -> Signature:
        """Insert ``field`` last among its kind (``Signature.append``)."""
        return self.insert(-1, field)

    def delete(self, name: str) -> Signature:
        """The signature without field ``name`` (unchanged when absent, like DSPy)."""
        return Signature._trusted(
            tuple(f for f in self._inputs if f.name != name),
            tuple(f for f in self._outputs if f.name != name),
            self._instructions,
        )

    def with_reasoning(self) -> Signature:
        """The signature ``dspy.ChainOfThought`` predicts with (cached).

        An output field ``reasoning: str`` (desc ``${reasoning}``, prefix ``Reasoning:``) prepended
        with ``Signature.prepend``, so the DSPy quirks of ``insert`` apply.
        """
        return self.cached(("with_reasoning",), self.prepend, self._REASONING)


def _type_repr(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _rebuild(
    inputs: tuple[Field, ...], outputs: tuple[Field, ...], instructions: str, name: str
) -> Signature:
    return Signature._trusted(inputs, outputs, instructions, name, keep_empty=True, clean=False)


def _check_fields(inputs: tuple[Field, ...], outputs: tuple[Field, ...]) -> None:
    seen: set[str] = set()
    for expected, group in (("input", inputs), ("output", outputs)):
        for field in group:
            if not isinstance(field, Field):
                raise SignatureError(f"expected a Field, got {type(field).__name__}")
            if field.kind != expected:
                raise SignatureError(
                    f"field {field.name!r} is an {field.kind} field but was given as an {expected}"
                )
            if not isinstance(field.name, str) or not field.name:
                raise SignatureError(f"field names must be non-empty strings, got {field.name!r}")
            if field.name in seen:
                raise SignatureError(f"field name {field.name!r} is used more than once")
            seen.add(field.name)
            problem = name_problem(field.name)
            if problem is not None:
                message, is_error = problem
                if is_error:
                    raise SignatureError(message)
                warnings.warn(message, SignatureWarning, stacklevel=4)


def _build_from_text(
    text: str,
    instructions: str | None,
    descriptions: tuple[tuple[str, str], ...],
    custom_types: tuple[tuple[str, Any], ...],
) -> tuple[Signature, tuple[tuple[str, int], ...]]:
    parsed = parse_text(text, dict(custom_types) if custom_types else None)
    descs = dict(descriptions)
    fields: dict[FieldKind, list[Field]] = {"input": [], "output": []}
    for kind, group in (("input", parsed.inputs), ("output", parsed.outputs)):
        for p in group:
            fields[kind].append(  # type: ignore[index]
                Field(
                    name=p.name,
                    kind=kind,  # type: ignore[arg-type]
                    annotation=p.annotation,
                    desc=descs.pop(p.name, default_desc(p.name)),
                    prefix=_prefix(p.name),
                    type_undefined=p.type_undefined if kind == "input" else None,
                    default=p.default,
                    default_factory=p.default_factory,
                )
            )
    if descs:
        raise SignatureError(
            f"descriptions given for unknown fields: {', '.join(sorted(descs))}", signature=text
        )
    if instructions is not None and not isinstance(instructions, str):
        raise SignatureError(f"instructions must be a str, not {type(instructions).__name__}")
    sig = Signature._trusted(tuple(fields["input"]), tuple(fields["output"]), instructions)
    return sig, tuple(parsed.warnings)


def _prefix(name: str) -> str:
    from dspex._signature._field import infer_prefix

    return infer_prefix(name) + ":"


_parse_uncached = _build_from_text
_parse_cached = functools.lru_cache(maxsize=4096)(_build_from_text)


def ensure_signature(signature: SignatureLike, instructions: str | None = None) -> Signature:
    """Coerce a :class:`Signature`, DSPy string form or ``dspy.Signature`` class to a Signature.

    Mirrors DSPy's ``ensure_signature``: ``instructions`` only applies to strings.
    """
    if isinstance(signature, Signature):
        if instructions is not None:
            raise SignatureError("don't pass instructions together with a Signature object")
        return signature
    if isinstance(signature, str):
        custom = None
        if ":" in signature:
            custom = detect_custom_types(signature, caller_frame(1))
        return Signature.parse(signature, instructions, custom_types=custom)
    if isinstance(signature, type):
        if instructions is not None:
            raise SignatureError("don't pass instructions together with a dspy.Signature class")
        return Signature.from_dspy(signature)
    raise SignatureError(
        "expected a dspex Signature, a signature string or a dspy.Signature class, "
        f"got {type(signature).__name__}"
    )
