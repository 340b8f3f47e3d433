"""Native BestOfN: DSPy 3.4.1's attempt loop on a native Predict or ChainOfThought.

Every attempt runs the module at ``temperature=1.0`` (DSPy's ``lm.copy(rollout_id=i,
temperature=1.0)``; the rollout id only keys DSPy's cache and never reaches the LM), scores it with
``reward_fn(inputs, prediction)`` (sync functions run in a worker thread, async ones are awaited)
and stops at the first reward at or above ``threshold``; the best prediction wins. Failures count
against ``fail_count`` exactly as in DSPy, including its quirks (see :meth:`NativeBestOfN.run`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgspec

from dspex.backends._spec import NO_OPTIONS, CallOptions, ModuleSpec
from dspex.backends.native._module import predictor, required, total_usage
from dspex.backends.native._predict import NativePredict
from dspex.backends.native._tools import call_user
from dspex.cache import CALL_CACHE, CacheUse
from dspex.errors import ConfigError, DSPexError, ModuleError
from dspex.lm import LMClient
from dspex.prediction import Prediction

log = logging.getLogger("dspex.native")

_B = TypeVar("_B", bound="NativeBestOfN")


class Attempts:
    """The state of one call: its LM settings, the LM calls made, the latest advice (Refine)."""

    __slots__ = ("advice", "calls", "options")

    def __init__(self, options: CallOptions):
        self.options = options
        self.calls: list[Prediction] = []
        self.advice: Any = None


class NativeBestOfN:
    """DSPy's ``BestOfN(module, N, reward_fn, threshold, fail_count)`` on a native module."""

    module_type: ClassVar[str] = "BestOfN"

    def __init__(
        self,
        module: NativePredict,
        N: int,
        reward_fn: Callable[..., Any],
        threshold: float | None,
        fail_count: int | None = None,
    ):
        if not callable(reward_fn):
            raise ConfigError(f"{self.module_type} reward_fn= must be callable, got {reward_fn!r}")
        if not isinstance(N, int) or N < 1:
            raise ConfigError(f"{self.module_type} N= must be an int >= 1, got {N!r}")
        self.module = module
        self.N = N
        self.reward_fn = reward_fn
        self.threshold = threshold
        #: As in DSPy, failures decrement this on the instance, so they carry over to later calls.
        self.fail_count = fail_count or N

    @classmethod
    def from_spec(cls: type[_B], spec: ModuleSpec, client: LMClient) -> _B:
        """Build from a spec: options ``N``, ``reward_fn``, ``threshold`` (required),
        ``fail_count`` and ``module`` (``"Predict"`` or ``"ChainOfThought"``)."""
        n, reward_fn, threshold = required(spec, "N", "reward_fn", "threshold")
        module = predictor(spec, client, inner=True)
        return cls(module, n, reward_fn, threshold, spec.options.get("fail_count"))

    async def run(self, values: dict[str, Any], options: CallOptions = NO_OPTIONS) -> Prediction:
        """Up to ``N`` attempts; the first reward ``>= threshold`` stops them, else the best one.

        A failed attempt (an LM, parse or reward_fn error) is logged and, as DSPy does, re-raised
        when its index exceeds ``fail_count``, which each failure decrements for good. When no
        attempt succeeded and none was re-raised (as with ``N <= 2`` and the default
        ``fail_count``), DSPy returns ``None``: here a prediction ``{"output": None}``, which is
        what the dspy implementation reports for it.
        """
        hot = msgspec.structs.replace(options, temperature=1.0)
        state = Attempts(options)
        best: Prediction | None = None
        best_reward: Any = -float("inf")
        call = CALL_CACHE.get() or CacheUse()
        start = call.rollout_id or 0
        for idx in range(self.N):
            try:
                # attempt i runs under rollout id start + i, as DSPy's lm.copy(rollout_id=...):
                # the response cache keeps each attempt's reply apart
                CALL_CACHE.set(msgspec.structs.replace(call, rollout_id=start + idx))
                try:
                    pred, used = await self._attempt(values, hot, state)
                finally:
                    CALL_CACHE.set(call)
                reward = await self._reward(values, pred)
                if compare_reward(reward, ">", best_reward):
                    best, best_reward = pred, reward
                if self._met(reward):
                    break
                await self._between(idx, values, used, pred, reward, state)
            except DSPexError as err:
                log.warning(
                    "%s: Attempt %d failed with rollout id %d: %s",
                    self.module_type,
                    idx + 1,
                    idx,
                    err,
                )
                if idx > self.fail_count:
                    raise
                self.fail_count -= 1
        usage = total_usage(state.calls)
        if best is None:
            return Prediction({"output": None}, implementation="native", usage=usage)
        return Prediction(
            best.to_dict(), implementation="native", completions=best.completions, usage=usage
        )

    async def _attempt(
        self, values: dict[str, Any], options: CallOptions, state: Attempts
    ) -> tuple[Prediction, dict[str, Any]]:
        """One run of the module; returns the prediction and the inputs it was given."""
        pred = await self.module.run(values, options)
        state.calls.append(pred)
        return pred, values

    def _met(self, reward: Any) -> bool:
        """Whether ``reward`` meets the threshold (``None`` fails the comparison, as in DSPy)."""
        return compare_reward(reward, ">=", self.threshold)

    async def _between(
        self,
        idx: int,
        values: dict[str, Any],
        used: dict[str, Any],
        pred: Prediction,
        reward: Any,
        state: Attempts,
    ) -> None:
        """What happens after an attempt that did not meet the threshold (nothing here)."""

    async def _reward(self, values: dict[str, Any], pred: Prediction) -> Any:
        try:
            return await call_user(self.reward_fn, values, pred)
        except Exception as exc:  # the user's function: a failed attempt, not a dspex bug
            raise ModuleError(f"reward_fn raised {type(exc).__name__}: {exc}") from exc


def compare_reward(reward: Any, op: str, other: Any) -> bool:
    """``reward > other`` or ``reward >= other``; a reward that does not compare fails the
    attempt (DSPy catches the TypeError with the attempt's other errors)."""
    try:
        return bool(reward > other if op == ">" else reward >= other)
    except Exception as exc:
        raise ModuleError(
            f"reward_fn returned {reward!r}, which cannot be compared: {exc}"
        ) from exc
