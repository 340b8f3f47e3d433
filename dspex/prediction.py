"""Prediction: a module's outputs, with attribute and dict access, and how it was served."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

#: ``served_by`` of a single module's prediction: one shared empty mapping, not a dict per call.
_NOT_A_PROGRAM: Mapping[str, str] = MappingProxyType({})


class Prediction(Mapping[str, Any]):
    """The output fields of one module call, like ``dspy.Prediction``.

    Read fields as attributes (``pred.answer``) or items (``pred["answer"]``). Besides the fields
    it records who served the call: ``implementation`` (``"native"`` or ``"dspy"``), whether a
    ``fallback`` to dspy happened and why (``fallback_reason``), the LM token ``usage``, its
    ``cost`` in US dollars (from LiteLLM's price map; None when a model is not in it), and, for
    ``n > 1``, every completion in ``completions`` (the fields hold the first one).

    A program served by ``Module.wrap`` (see :meth:`with_predictors`) also has ``served_by``:
    each predictor path that ran during the call (``draft.predict``) mapped to the
    implementation that served it, ``"native"`` or ``"dspy"``, or ``"mixed"`` for a predictor
    called several times whose calls were served by both. Its ``implementation`` is then
    ``"native"`` or ``"dspy"`` when every predictor call was served by that one, ``"mixed"``
    otherwise, and ``"dspy"`` when no predictor ran (the program's own code runs on dspy); a
    predictor call that fell back makes it a ``fallback``, ``fallback_reason`` naming the
    predictor (``"refine: ParseError: ..."``). ``served_by`` is empty for a single module.
    """

    __slots__ = (
        "_fields",
        "completions",
        "cost",
        "fallback",
        "fallback_reason",
        "implementation",
        "served_by",
        "usage",
    )

    def __init__(
        self,
        fields: dict[str, Any],
        *,
        implementation: str = "native",
        completions: list[dict[str, Any]] | None = None,
        usage: dict[str, int] | None = None,
        fallback: bool = False,
        fallback_reason: str | None = None,
        served_by: Mapping[str, str] | None = None,
        cost: float | None = None,
    ):
        self._fields = fields
        self.implementation = implementation
        self.completions = completions if completions is not None else [fields]
        self.usage = usage or {}
        self.fallback = fallback
        self.fallback_reason = fallback_reason
        self.served_by: Mapping[str, str] = dict(served_by) if served_by else _NOT_A_PROGRAM
        self.cost = cost

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by its constructor's arguments: predictions come back from the dspy worker
        # processes (and __getattr__ must not run on a half-built one).
        return _rebuild, (
            self._fields,
            self.implementation,
            self.completions,
            self.usage,
            self.fallback,
            self.fallback_reason,
            dict(self.served_by),
            self.cost,
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # a protocol lookup (copy, pickle): never a field
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(
                f"the prediction has no field {name!r}; its fields are {list(self._fields)}"
            ) from None

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        """Equal when the output fields are equal (how it was served does not matter)."""
        if isinstance(other, Prediction):
            return self._fields == other._fields
        if isinstance(other, Mapping):
            return self._fields == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """The output fields as a new dict."""
        return dict(self._fields)

    def toDict(self) -> dict[str, Any]:
        """:meth:`to_dict` by DSPy's name, for code written against ``dspy.Prediction``."""
        return self.to_dict()

    def with_served(self, implementation: str, *, fallback_reason: str | None = None) -> Prediction:
        """This prediction, marked as served by ``implementation`` (and as a fallback, if a
        reason is given)."""
        return Prediction(
            self._fields,
            implementation=implementation,
            completions=self.completions,
            usage=self.usage,
            fallback=fallback_reason is not None,
            fallback_reason=fallback_reason,
            served_by=self.served_by,
            cost=self.cost,
        )

    def with_predictors(
        self,
        served_by: Mapping[str, str],
        implementation: str,
        *,
        usage: Mapping[str, int] | None = None,
        cost: float | None = None,
        fallback_reason: str | None = None,
    ) -> Prediction:
        """This prediction as a wrapped program's: ``served_by`` maps each predictor path that
        ran to ``"native"``, ``"dspy"`` or ``"mixed"``; ``implementation`` says who served
        them all (see the class docstring); ``usage`` and ``cost`` (the predictors' tokens and
        their cost, None if unknown) are added to this prediction's (whose cost is that of the
        LM calls DSPy made in the program itself); ``fallback_reason`` (which predictor calls
        fell back, and why) marks it as a fallback."""
        total = dict(self.usage)
        for key, value in (usage or {}).items():
            total[key] = total.get(key, 0) + value
        own, theirs = _known(self.cost, self.usage), _known(cost, usage)
        spent = None if own is None or theirs is None else own + theirs
        return Prediction(
            self._fields,
            implementation=implementation,
            completions=self.completions,
            usage=total,
            fallback=self.fallback or fallback_reason is not None,
            fallback_reason=fallback_reason or self.fallback_reason,
            served_by=served_by,
            cost=spent,
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        extra = f", fallback={self.fallback_reason!r}" if self.fallback else ""
        more = f", +{len(self.completions) - 1} completions" if len(self.completions) > 1 else ""
        return f"Prediction({fields}; served by {self.implementation}{extra}{more})"


def _known(cost: float | None, usage: Mapping[str, int] | None) -> float | None:
    """What LM calls cost: ``cost``, 0 when they used no tokens, None when unknown."""
    if cost is not None:
        return cost
    return None if usage else 0.0


def _rebuild(
    fields: dict[str, Any],
    implementation: str,
    completions: list[dict[str, Any]],
    usage: dict[str, int],
    fallback: bool,
    fallback_reason: str | None,
    served_by: dict[str, str],
    cost: float | None = None,
) -> Prediction:
    return Prediction(
        fields,
        implementation=implementation,
        completions=completions,
        usage=usage,
        fallback=fallback,
        fallback_reason=fallback_reason,
        served_by=served_by,
        cost=cost,
    )
