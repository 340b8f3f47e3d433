"""What every native module type shares: how it is built from a spec and how it is run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from dspex.backends._spec import CallOptions, ModuleSpec, PredictorState
from dspex.backends.native._predict import NativeChainOfThought, NativePredict
from dspex.errors import ConfigError
from dspex.lm import LM, LMClient
from dspex.prediction import Prediction
from dspex.signature import Signature


class NativeModule(Protocol):
    """A native module instance: ``run`` takes inputs already checked by ``check_inputs``."""

    async def run(self, values: dict[str, Any], options: CallOptions) -> Prediction:
        """Run one call."""
        ...


class NativeBuilder(Protocol):
    """Builds a native module type from a spec (``NativeBackend`` checked its LM and signature)."""

    def __call__(self, spec: ModuleSpec, client: LMClient) -> NativeModule:
        """Build the module."""
        ...


def parts(spec: ModuleSpec) -> tuple[Signature, LM]:
    """The spec's signature and LM, which every native module type needs."""
    if spec.signature is None:
        raise ConfigError(f"{spec.module_type} needs a signature")
    if spec.lm is None:
        raise ConfigError(f"{spec.module_type} needs an LM: pass lm= or set Runtime(lm=...)")
    return spec.signature, spec.lm


def required(spec: ModuleSpec, *names: str) -> list[Any]:
    """The values of options ``names``; a ConfigError names the missing ones (as on dspy)."""
    missing = [n for n in names if n not in spec.options]
    if missing:
        raise ConfigError(f"{spec.module_type} needs the option(s) {missing}")
    return [spec.options[n] for n in names]


def predictor(spec: ModuleSpec, client: LMClient, *, inner: bool = False) -> NativePredict:
    """The spec's predictor with its demos and prompt templates built: ``Predict`` or
    ``ChainOfThought`` by module type, or, with ``inner``, by the ``module`` option (the module
    BestOfN, Refine and Parallel run), on the state read from a program if the spec has it
    (``module`` or ``module.predict`` in ``spec.predictors``)."""
    sig, lm = parts(spec)
    kind = spec.options.get("module", "Predict") if inner else spec.module_type
    if kind not in ("Predict", "ChainOfThought"):
        raise ConfigError(f"{spec.module_type} module= must be 'Predict' or 'ChainOfThought'")
    cot = kind == "ChainOfThought"
    cls = NativeChainOfThought if cot else NativePredict
    module = cls(sig, lm=lm, client=client, demos=spec.demos, adapter=spec.adapter)
    if inner:  # BestOfN's, Refine's or Parallel's module: DSPy's attribute ``module``
        name = module.stream_name = "module.predict" if cot else "module"
        if spec.predictors:
            module.signature, module.demos = state_of(spec, name, module.signature)
    module.adapter.prepare(module.signature)
    return module


def state_of(
    spec: ModuleSpec, name: str, default: Signature
) -> tuple[Signature, tuple[dict[str, Any], ...]]:
    """The signature and demos inner predictor ``name`` runs with: its state as read from a
    program (``spec.predictors``), or ``default`` without demos when the spec has none.

    ConfigError when the read signature's fields are not those ``default`` has (native runs
    the type's own control flow, which reads and writes those fields by name)."""
    state: PredictorState | None = spec.predictors.get(name)
    if state is None:
        if spec.predictors:
            raise ConfigError(f"{spec.module_type} needs the state of its predictor {name!r}")
        return default, ()
    sig = state.signature
    if (sig.input_names, sig.output_names) != (default.input_names, default.output_names):
        raise ConfigError(
            f"its predictor {name!r} has the fields {sig.signature!r}, where native "
            f"{spec.module_type} runs {default.signature!r}"
        )
    return sig, state.demos


def total_usage(predictions: Iterable[Prediction]) -> dict[str, int]:
    """The token usage of several LM calls, summed per counter."""
    total: dict[str, int] = {}
    for pred in predictions:
        for key, value in pred.usage.items():
            total[key] = total.get(key, 0) + value
    return total
