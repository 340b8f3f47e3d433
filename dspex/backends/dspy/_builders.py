"""The dspy builders of each module type, named in :data:`dspex._kinds.KINDS`: each takes the
imported ``dspy`` package and a spec and returns the module a call runs (its ``acall`` or, in a
worker thread, its ``__call__``)."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from dspex.backends._spec import ModuleSpec
from dspex.backends.dspy._backend import to_prediction
from dspex.errors import ConfigError, ModuleError

#: Builds one module type's DSPy module from the ``dspy`` package and a spec.
DSPyBuilder = Callable[[Any, ModuleSpec], Any]


def _sig(spec: ModuleSpec) -> Any:
    if spec.signature is None:
        raise ConfigError(f"{spec.module_type} needs a signature")
    return spec.signature.to_dspy()


def _required(spec: ModuleSpec, *names: str) -> list[Any]:
    missing = [n for n in names if n not in spec.options]
    if missing:
        raise ConfigError(f"{spec.module_type} needs the option(s) {missing}")
    return [spec.options[n] for n in names]


def _inner(dspy: Any, spec: ModuleSpec) -> Any:
    """The module BestOfN, Refine and Parallel run: option ``module``, Predict by default."""
    kind = spec.options.get("module", "Predict")
    if kind not in ("Predict", "ChainOfThought"):
        raise ConfigError(f"{spec.module_type} module= must be 'Predict' or 'ChainOfThought'")
    return getattr(dspy, kind)(_sig(spec))


def predict(dspy: Any, spec: ModuleSpec) -> Any:
    """``dspy.Predict``."""
    return dspy.Predict(_sig(spec))


def chain_of_thought(dspy: Any, spec: ModuleSpec) -> Any:
    """``dspy.ChainOfThought``."""
    return dspy.ChainOfThought(_sig(spec))


def react(dspy: Any, spec: ModuleSpec) -> Any:
    """``dspy.ReAct`` with options ``tools`` and ``max_iters`` (default 20)."""
    (tools,) = _required(spec, "tools")
    return dspy.ReAct(_sig(spec), tools=tools, max_iters=spec.options.get("max_iters", 20))


def multi_chain_comparison(dspy: Any, spec: ModuleSpec) -> Any:
    """``dspy.MultiChainComparison`` with options ``M`` (3) and ``temperature`` (0.7)."""
    options = spec.options
    return dspy.MultiChainComparison(
        _sig(spec), M=options.get("M", 3), temperature=options.get("temperature", 0.7)
    )


def best_of_n(dspy: Any, spec: ModuleSpec) -> Any:
    """``dspy.BestOfN`` over the ``module`` option's predictor."""
    n, reward_fn, threshold = _required(spec, "N", "reward_fn", "threshold")
    fail_count = spec.options.get("fail_count")
    return dspy.BestOfN(_inner(dspy, spec), n, reward_fn, threshold, fail_count=fail_count)


def refine(dspy: Any, spec: ModuleSpec) -> Any:
    """``dspy.Refine`` over the ``module`` option's predictor."""
    n, reward_fn, threshold = _required(spec, "N", "reward_fn", "threshold")
    fail_count = spec.options.get("fail_count")
    return dspy.Refine(_inner(dspy, spec), n, reward_fn, threshold, fail_count=fail_count)


class DSPyParallel:
    """``dspy.Parallel`` over one module, called as ``(batch=[{...}, ...])`` in a worker thread:
    ``{"results": [...]}`` with, in order, each item's Prediction or a ModuleError."""

    __slots__ = ("dspy", "module", "num_threads")

    def __init__(self, dspy: Any, module: Any, num_threads: int):
        self.dspy = dspy
        self.module = module
        self.num_threads = num_threads

    def predictors(self) -> list[Any]:
        """The inner module's predictors (which take the demos)."""
        predictors: list[Any] = self.module.predictors()
        return predictors

    def __call__(self, batch: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Run every item of ``batch``: a failed item is a ModuleError in its place."""
        runner = self.dspy.Parallel(
            num_threads=self.num_threads,
            max_errors=len(batch) + 1,
            return_failed_examples=True,
            disable_progress_bar=True,
        )
        results, _, _ = runner([(self.module, dict(item)) for item in batch])
        return {
            "results": [
                ModuleError("the item failed in dspy.Parallel")
                if item is None
                else to_prediction(item, ())
                for item in results
            ]
        }


def parallel(dspy: Any, spec: ModuleSpec) -> DSPyParallel:
    """``dspy.Parallel`` over the ``module`` option's predictor, ``num_threads`` (8) at once."""
    return DSPyParallel(dspy, _inner(dspy, spec), spec.options.get("num_threads", 8))


def program_of_thought(dspy: Any, spec: ModuleSpec) -> Any:
    """``dspy.ProgramOfThought`` with option ``max_iters`` (3); ConfigError without Deno."""
    if shutil.which("deno") is None:
        raise ConfigError(
            "ProgramOfThought runs code in DSPy's Deno sandbox and Deno is not installed; "
            "install Deno (https://deno.land) and make sure `deno` is on PATH"
        )
    return dspy.ProgramOfThought(_sig(spec), max_iters=spec.options.get("max_iters", 3))


def import_factory(path: str) -> Any:
    """The object a ``"package.module:attribute"`` path names (a program's class or factory),
    imported; ConfigError naming the path if it does not resolve."""
    module_name, _, attrs = path.partition(":")
    if not module_name or not attrs:
        raise ConfigError(
            f"a program factory path looks like 'package.module:attribute', got {path!r}"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for attr in attrs.split("."):
            found = getattr(found, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import the program factory {path!r}: {exc}") from exc
    return found


def program(dspy: Any, spec: ModuleSpec) -> Any:
    """The user's own dspy.Module, or a fresh one from its factory (on every restart): a
    callable, or a ``"package.module:attribute"`` path to import one from."""
    program = spec.program
    if isinstance(program, str):
        program = import_factory(program)
    if isinstance(program, type) or (callable(program) and not isinstance(program, dspy.Module)):
        program = program()  # a factory: a fresh instance per module actor incarnation
    if not isinstance(program, dspy.Module):
        raise ConfigError(f"Module.wrap needs a dspy.Module or a factory of one, got {program!r}")
    return program
