"""One record per module type: adding a type means adding its builders and one line here.

:data:`KINDS` maps each module type's name to its :class:`ModuleKind`: the options its facade
accepts and requires, the inputs its calls take, and the builders of its native and dspy
implementations. Everything else derives from this table, once at import or once per module:
``config.MODULE_TYPES`` (validation and the snake_case spellings), the backends' module types
and hence the router's registry, the facades' options, and the module actor's input check.

Why builders are paths: this table sits below :mod:`dspex.config` (which needs the names), and
the backends import ``dspex.config``, so the table cannot import the backends. Each builder is
named by a ``"module:attribute"`` path, imported on first use and cached; the typed accessors
(:meth:`ModuleKind.native_builder`, :meth:`ModuleKind.dspy_builder`) give mypy the builders'
types at every use, and a test resolves every entry and checks that it takes a builder's
arguments.

A new module type needs its builders (a dspy one in ``dspex/backends/dspy/_builders.py``, a
native one if it has one), its record here and its facade (a class naming it, with its
docstring, in ``dspex/modules/_facade.py``, exported from ``dspex``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec

from dspex.errors import ConfigError

if TYPE_CHECKING:
    from dspex.backends.dspy._builders import DSPyBuilder
    from dspex.backends.native._module import NativeBuilder

#: How a call's inputs are checked: ``"signature"``, against the signature's input fields (plus
#: the kind's ``extra_inputs``); ``"batch"``, ``batch=[{...}, ...]``, a list of input mappings,
#: each checked when it runs; ``"program"``, a wrapped dspy.Module's own (it has no signature
#: or LM of its own, and its forward checks its inputs).
Inputs = Literal["signature", "batch", "program"]

_NATIVE = "dspex.backends.native."
_DSPY = "dspex.backends.dspy._builders:"


class ModuleKind(msgspec.Struct, frozen=True, kw_only=True):
    """A module type: its name, options, inputs, and the builders of its implementations.

    ``native`` and ``dspy`` are ``"module:attribute"`` paths of a native builder (None: no
    native implementation) and of the dspy builder (every type has one).
    """

    name: str
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    extra_inputs: frozenset[str] = frozenset()
    inputs: Inputs = "signature"
    native: str | None = None
    dspy: str

    def check_options(self, options: Mapping[str, Any]) -> None:
        """ConfigError for an option this type does not accept or a required one missing."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(self.options) or "none"
            raise ConfigError(
                f"{self.name} got unknown option(s) {unknown}; it accepts: {accepted}"
            )
        missing = [name for name in self.required if name not in options]
        if missing:
            raise ConfigError(f"{self.name} needs the option(s) {missing}")

    def native_builder(self) -> NativeBuilder:
        """The native builder; ConfigError if the type has no native implementation."""
        if self.native is None:
            raise ConfigError(f"{self.name} has no native implementation")
        return cast("NativeBuilder", resolve(self.native))

    def dspy_builder(self) -> DSPyBuilder:
        """The dspy builder."""
        return cast("DSPyBuilder", resolve(self.dspy))


@functools.cache
def resolve(path: str) -> Any:
    """The object at ``"package.module:attr.attr"``, imported on first use and cached."""
    module, _, attrs = path.partition(":")
    found: Any = importlib.import_module(module)
    for attr in attrs.split("."):
        found = getattr(found, attr)
    return found


#: Every module type dspex runs, in the order they are listed to users.
KINDS: dict[str, ModuleKind] = {
    kind.name: kind
    for kind in (
        ModuleKind(
            name="Predict",
            native=_NATIVE + "_module:predictor",
            dspy=_DSPY + "predict",
        ),
        ModuleKind(
            name="ChainOfThought",
            native=_NATIVE + "_module:predictor",
            dspy=_DSPY + "chain_of_thought",
        ),
        ModuleKind(
            name="ReAct",
            options=("tools", "max_iters"),
            required=("tools",),
            native=_NATIVE + "_react:NativeReAct.from_spec",
            dspy=_DSPY + "react",
        ),
        ModuleKind(
            name="MultiChainComparison",
            options=("M", "temperature"),
            extra_inputs=frozenset({"completions"}),
            native=_NATIVE + "_multi_chain:NativeMultiChainComparison.from_spec",
            dspy=_DSPY + "multi_chain_comparison",
        ),
        ModuleKind(
            name="BestOfN",
            options=("N", "reward_fn", "threshold", "fail_count", "module"),
            required=("N", "reward_fn", "threshold"),
            native=_NATIVE + "_best_of_n:NativeBestOfN.from_spec",
            dspy=_DSPY + "best_of_n",
        ),
        ModuleKind(
            name="Refine",
            options=("N", "reward_fn", "threshold", "fail_count", "module"),
            required=("N", "reward_fn", "threshold"),
            native=_NATIVE + "_refine:NativeRefine.from_spec",
            dspy=_DSPY + "refine",
        ),
        ModuleKind(
            name="Parallel",
            options=("module", "num_threads"),
            inputs="batch",
            native=_NATIVE + "_parallel:NativeParallel.from_spec",
            dspy=_DSPY + "parallel",
        ),
        ModuleKind(
            name="ProgramOfThought",
            options=("max_iters",),
            dspy=_DSPY + "program_of_thought",
        ),
        ModuleKind(name="Module", inputs="program", dspy=_DSPY + "program"),
    )
}
