"""Native Refine: BestOfN plus DSPy 3.4.1's feedback between attempts, byte for byte.

After an attempt below ``threshold`` (but the last), DSPy asks the LM for advice with its
``OfferFeedback`` signature, sending the program's source (``inspect.getsource`` of DSPy's own
``Predict`` or ``ChainOfThought`` class), a description of its predictor, the attempt's inputs,
trace, outputs, the reward function's source, the threshold and the reward, as 2-space-indented
JSON (orjson). The next attempts then run with an extra input field ``hint_`` holding the advice
for the predictor. The feedback call runs on the call's LM settings, not the attempts'
``temperature=1.0``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.native._best_of_n import Attempts, NativeBestOfN, compare_reward
from dspex.backends.native._module import predictor, required
from dspex.backends.native._predict import NativeChainOfThought, NativePredict
from dspex.backends.native._types import field_descriptions
from dspex.errors import ConfigError
from dspex.lm import LMClient
from dspex.prediction import Prediction
from dspex.signature import Field, Signature

_HINT = Field.input("hint_", desc="A hint to the module from an earlier run")

_OFFER_FEEDBACK_DOC = """
    In the discussion, assign blame to each module that contributed to the final reward being below the threshold, if
    any. Then, prescribe concrete advice of how the module should act on its future input when we retry the process, if
    it were to receive the same or similar inputs. If a module is not to blame, the advice should be N/A.
    The module will not see its own history, so it needs to rely on entirely concrete and actionable advice from you
    to avoid the same mistake on the same or similar inputs.
    """  # noqa: E501 (DSPy's docstring, line for line)


@functools.cache
def offer_feedback() -> Signature:
    """DSPy's ``dspy.predict.refine.OfferFeedback`` signature."""
    return Signature(
        (
            Field.input("program_code", desc="The code of the program that we are analyzing"),
            Field.input(
                "modules_defn",
                desc="The definition of each module in the program, including its I/O",
            ),
            Field.input("program_inputs", desc="The inputs to the program that we are analyzing"),
            Field.input(
                "program_trajectory",
                desc="The trajectory of the program's execution, showing each module's I/O",
            ),
            Field.input("program_outputs", desc="The outputs of the program that we are analyzing"),
            Field.input(
                "reward_code", desc="The code of the reward function that we are analyzing"
            ),
            Field.input(
                "target_threshold", float, desc="The target threshold for the reward function"
            ),
            Field.input(
                "reward_value", float, desc="The reward value assigned to the program's outputs"
            ),
            Field.input(
                "module_names",
                list[str],
                desc="The names of the modules in the program, for which we seek advice",
            ),
        ),
        (
            Field.output(
                "discussion", desc="Discussing blame of where each module went wrong, if it did"
            ),
            Field.output(
                "advice",
                dict[str, str],
                desc="For each module, describe very concretely, in this order: the specific "
                "scenarios in which it has made mistakes in the past and what each mistake was, "
                "followed by what it should do differently in that kind ofscenario in the "
                "future. If the module is not to blame, write N/A.",
            ),
        ),
        _OFFER_FEEDBACK_DOC,
        name="OfferFeedback",
    )


@functools.cache
def dspy_class_source(relative_path: str, name: str) -> str:
    """``inspect.getsource`` of the DSPy class ``name`` in ``dspy/<relative_path>``, read from
    DSPy's installed source without importing DSPy (the same lines: first decorator to the end
    of the block)."""
    spec = importlib.util.find_spec("dspy")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("Refine sends DSPy's source of its module to the LM; install dspy")
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for node in ast.parse("".join(lines)).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            start = (node.decorator_list[0] if node.decorator_list else node).lineno - 1
            return "".join(inspect.getblock(lines[start:]))
    raise ConfigError(f"class {name} not found in {path}")


def describe_module(name: str, signature: Signature) -> str:
    """DSPy's ``refine.inspect_modules`` for a program with one predictor."""
    separator = "-" * 80
    instructions = textwrap.dedent(signature.instructions)
    instructions = ("\n" + "\t" * 2).join(["", *instructions.splitlines()])
    output = [
        separator,
        f"Module {name}",
        "\n\tInput Fields:",
        ("\n" + "\t" * 2).join(["", *field_descriptions(signature.inputs).splitlines()]),
        "\tOutput Fields:",
        ("\n" + "\t" * 2).join(["", *field_descriptions(signature.outputs).splitlines()]),
        f"\tOriginal Instructions: {instructions}",
        separator,
    ]
    return "\n".join(o.strip("\n") for o in output)


def recursive_mask(o: Any) -> Any:
    """DSPy's ``refine.recursive_mask``: what orjson cannot write becomes a placeholder."""
    import orjson

    try:
        orjson.dumps(o)
        return o
    except TypeError:
        pass
    if isinstance(o, dict):
        return {k: recursive_mask(v) for k, v in o.items()}
    if isinstance(o, list):
        return [recursive_mask(v) for v in o]
    if isinstance(o, tuple):
        return tuple(recursive_mask(v) for v in o)
    return f"<non-serializable: {type(o).__name__}>"


def _source_of(reward_fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(reward_fn)
    except TypeError:
        return inspect.getsource(reward_fn.__class__)


class NativeRefine(NativeBestOfN):
    """DSPy's ``Refine(module, N, reward_fn, threshold, fail_count)`` on a native module."""

    module_type: ClassVar[str] = "Refine"

    def __init__(
        self,
        module: NativePredict,
        N: int,
        reward_fn: Callable[..., Any],
        threshold: float | None,
        fail_count: int | None = None,
        *,
        reward_fn_code: str | None = None,
    ):
        super().__init__(module, N, reward_fn, threshold, fail_count)
        # The predictor's name in DSPy's named_predictors(): the advice is keyed by it.
        if isinstance(module, NativeChainOfThought):
            self.name, path, cls = "predict", "predict/chain_of_thought.py", "ChainOfThought"
        else:
            self.name, path, cls = "self", "predict/predict.py", "Predict"
        try:
            self.reward_fn_code = reward_fn_code or _source_of(reward_fn)
        except (OSError, TypeError) as exc:
            raise ConfigError(
                f"Refine sends the reward function's source to the LM, and it has none: {exc}"
            ) from exc
        self.module_code = dspy_class_source(path, cls)
        self.modules_defn = describe_module(self.name, module.signature)
        self.hinted = NativePredict(
            module.signature.append(_HINT),
            lm=module.lm,
            client=module.client,
            demos=module.demos,
            adapter=module.adapter,
            stream_name=module.stream_name,  # DSPy runs the same predictor, with a hint
        )
        self.feedback = NativePredict(
            offer_feedback(),
            lm=module.lm,
            client=module.client,
            adapter=module.adapter,
            stream_name=None,
        )
        import orjson  # noqa: F401 (the feedback request is written with it: import it now)

    @classmethod
    def from_spec(cls, spec: ModuleSpec, client: LMClient) -> NativeRefine:
        """Build from a spec, as :meth:`NativeBestOfN.from_spec`; a Refine read from a program
        sends the source DSPy kept of its reward function (DSPy wraps the function itself)."""
        n, reward_fn, threshold = required(spec, "N", "reward_fn", "threshold")
        module = predictor(spec, client, inner=True)
        code = getattr(spec.program, "reward_fn_code", None)
        fail_count = spec.options.get("fail_count")
        return cls(module, n, reward_fn, threshold, fail_count, reward_fn_code=code)

    def _met(self, reward: Any) -> bool:
        return self.threshold is not None and compare_reward(reward, ">=", self.threshold)

    async def _attempt(
        self, values: dict[str, Any], options: CallOptions, state: Attempts
    ) -> tuple[Prediction, dict[str, Any]]:
        """The module, or once there is advice, the module with the ``hint_`` input."""
        if not state.advice:
            return await super()._attempt(values, options, state)
        used = {**values, "hint_": state.advice.get(self.name, "N/A")}
        pred = await self.hinted.run(used, options)
        state.calls.append(pred)
        return pred, used

    async def _between(
        self,
        idx: int,
        values: dict[str, Any],
        used: dict[str, Any],
        pred: Prediction,
        reward: Any,
        state: Attempts,
    ) -> None:
        """Ask for advice (DSPy's OfferFeedback call), unless it was the last attempt."""
        if idx == self.N - 1:
            return
        import orjson

        outputs = pred.to_dict()
        advise: dict[str, Any] = {
            "program_code": self.module_code,
            "modules_defn": self.modules_defn,
            "program_inputs": values,
            "program_trajectory": [{"module_name": self.name, "inputs": used, "outputs": outputs}],
            "program_outputs": outputs,
            "reward_code": self.reward_fn_code,
            "target_threshold": self.threshold,
            "reward_value": reward,
            "module_names": [self.name],
        }
        inputs = {
            k: v
            if isinstance(v, str)
            else orjson.dumps(recursive_mask(v), option=orjson.OPT_INDENT_2).decode()
            for k, v in advise.items()
        }
        feedback = await self.feedback.run(inputs, state.options)
        state.calls.append(feedback)
        state.advice = feedback["advice"]
