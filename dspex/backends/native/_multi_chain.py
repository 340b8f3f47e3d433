"""Native MultiChainComparison: DSPy 3.4.1's comparison of M reasoning attempts in one call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from dspex.backends._spec import NO_OPTIONS, CallOptions, ModuleSpec
from dspex.backends.native._module import parts, state_of
from dspex.backends.native._predict import NativePredict
from dspex.config import AdapterName, TwoStep
from dspex.errors import ConfigError, InputError
from dspex.lm import LM, LMClient
from dspex.prediction import Prediction
from dspex.signature import Field, SignatureLike, ensure_signature


class NativeMultiChainComparison:
    """DSPy's ``MultiChainComparison(signature, M, temperature)``.

    The predictor's signature gets input fields ``reasoning_attempt_1..M`` (prefix ``Student
    Attempt #i:``) and a first output ``rationale``; every call runs at ``temperature`` (DSPy's
    Predict config wins over the LM's and the call's). Calls take ``completions``: M mappings with
    ``rationale`` or ``reasoning`` and the signature's last output field.
    """

    __slots__ = ("M", "last_key", "predict", "temperature")
    module_type: ClassVar[str] = "MultiChainComparison"

    def __init__(
        self,
        signature: SignatureLike,
        *,
        lm: LM,
        client: LMClient,
        M: int = 3,
        temperature: float = 0.7,
        demos: Sequence[Mapping[str, Any]] = (),
        adapter: AdapterName | TwoStep = "chat",
    ):
        sig = ensure_signature(signature)
        if not sig.outputs:
            raise ConfigError("MultiChainComparison needs a signature with an output field")
        if not isinstance(M, int) or M < 1:
            raise ConfigError(f"MultiChainComparison M= must be an int >= 1, got {M!r}")
        self.M = M
        self.temperature = temperature
        self.last_key = sig.outputs[-1].name
        for idx in range(M):
            sig = sig.append(
                Field.input(
                    f"reasoning_attempt_{idx + 1}",
                    prefix=f"Student Attempt #{idx + 1}:",
                    desc="${reasoning attempt}",
                )
            )
        sig = sig.prepend(
            Field.output(
                "rationale",
                prefix="Accurate Reasoning: Thank you everyone. Let's now holistically",
                desc="${corrected reasoning}",
            )
        )
        self.predict = NativePredict(
            sig, lm=lm, client=client, demos=demos, adapter=adapter, stream_name="predict"
        )
        self.predict.adapter.prepare(sig)

    @classmethod
    def from_spec(cls, spec: ModuleSpec, client: LMClient) -> NativeMultiChainComparison:
        """Build from a spec: options ``M`` (default 3) and ``temperature`` (default 0.7); one
        read from a program runs its ``predict`` predictor's state."""
        sig, lm = parts(spec)
        module = cls(
            sig,
            lm=lm,
            client=client,
            M=spec.options.get("M", 3),
            temperature=spec.options.get("temperature", 0.7),
            demos=spec.demos,
            adapter=spec.adapter,
        )
        if spec.predictors:  # read from a program: its predictor's optimized state
            predict = module.predict
            predict.signature, predict.demos = state_of(spec, "predict", predict.signature)
            predict.adapter.prepare(predict.signature)
        return module

    def attempts(self, completions: Any) -> dict[str, str]:
        """The ``reasoning_attempt_i`` inputs DSPy builds from ``completions``: «I'm trying to
        <first line of the rationale> I'm not sure but my prediction is <first line of the
        answer>»."""
        if not isinstance(completions, Sequence) or isinstance(completions, (str, bytes)):
            raise InputError("MultiChainComparison takes completions=[{...}, ...]: a list")
        attempts = []
        for i, c in enumerate(completions):
            if not isinstance(c, Mapping) and not hasattr(c, "get"):  # e.g. a dspy.Prediction
                raise InputError(f"completions[{i}] must be a mapping, got {type(c).__name__}")
            rationale = c.get("rationale", c.get("reasoning"))
            if not isinstance(rationale, str):
                raise InputError(f"completions[{i}] needs a 'rationale' or 'reasoning' string")
            if self.last_key not in c:
                raise InputError(f"completions[{i}] needs the output field {self.last_key!r}")
            rationale = rationale.strip().split("\n")[0].strip()
            answer = str(c[self.last_key]).strip().split("\n")[0].strip()
            attempts.append(
                f"«I'm trying to {rationale} I'm not sure but my prediction is {answer}»"
            )
        if len(attempts) != self.M:
            raise InputError(
                f"The number of attempts ({len(attempts)}) doesn't match the expected number M "
                f"({self.M}). Please set the correct value for M when initializing "
                "MultiChainComparison."
            )
        return {f"reasoning_attempt_{idx + 1}": a for idx, a in enumerate(attempts)}

    async def run(self, values: dict[str, Any], options: CallOptions = NO_OPTIONS) -> Prediction:
        """Compare the attempts in ``values["completions"]``; the other values are the inputs."""
        inputs = dict(values)
        if "completions" not in inputs:
            raise InputError("MultiChainComparison calls take completions=[{...}, ...]")
        attempts = self.attempts(inputs.pop("completions"))
        opts = msgspec.structs.replace(options, temperature=self.temperature)
        return await self.predict.run({**attempts, **inputs}, opts)
