"""What both implementations share: the module spec, per-call options and the protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from dspex.cache._cache import CacheUse
from dspex.config import AdapterName, Implementation, TwoStep
from dspex.lm import LM
from dspex.prediction import Prediction
from dspex.signature import Signature


class PredictorState(msgspec.Struct, frozen=True):
    """One inner predictor's optimized state, as DSPy holds it: its whole ``signature`` (a
    ChainOfThought's ``reasoning`` included, instructions as optimized) and its ``demos``."""

    signature: Signature
    demos: tuple[dict[str, Any], ...] = ()


class ModuleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to build one module instance on either implementation.

    ``options`` holds module options (``n``, ``tools``, ``max_iters``, ``reward_fn``, ...);
    ``program`` a user's own ``dspy.Module`` (or a factory of one) for the generic wrapper, or,
    for one sub-module of a wrapped program, its own DSPy module (the dspy implementation runs a
    copy of it: the exact object the program was optimized with). ``predictors`` holds, for a
    type with several predictors read from a program (a ReAct's ``react`` and
    ``extract.predict``), each one's state by its name in DSPy's ``named_predictors``: the
    native implementation builds its predictors from it, the dspy one sets its demos.
    """

    module_type: str
    signature: Signature | None = None
    demos: tuple[dict[str, Any], ...] = ()
    lm: LM | None = None
    adapter: AdapterName | TwoStep = "chat"
    options: dict[str, Any] = {}
    program: Any = None
    predictors: dict[str, PredictorState] = {}


class CallOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Per-call LM overrides: ``temperature``, ``max_tokens``, ``n`` (None: the LM's own), and
    the response cache's ``cache`` (None: the LM's) and ``rollout_id``; ``refresh`` (set by the
    module actor on a fallback attempt): send the requests, and keep their replies, instead of
    answering from the cache.

    ``num_retries`` is set (to 0) by the module actor on a fallback attempt only, which makes
    one request: the dspy implementation passes it to LiteLLM (native's failed attempt already
    did its retries)."""

    temperature: float | None = None
    max_tokens: int | None = None
    n: int | None = None
    num_retries: int | None = None
    cache: bool | None = None
    rollout_id: int | None = None
    refresh: bool = False

    def cache_use(self) -> CacheUse | None:
        """The call's own cache settings, if it has any (``cache``, ``rollout_id``,
        ``refresh``)."""
        if self.cache is None and self.rollout_id is None and not self.refresh:
            return None
        return CacheUse(self.cache, self.rollout_id, self.refresh)

    def lm_overrides(self) -> dict[str, Any]:
        """The overrides that are set, as LM keyword arguments."""
        return {
            k: v
            for k in ("temperature", "max_tokens", "n", "num_retries")
            if (v := getattr(self, k)) is not None
        }


NO_OPTIONS = CallOptions()


class Backend(Protocol):
    """One implementation of a set of module types (the original design's module protocol)."""

    name: Implementation

    @property
    def module_types(self) -> frozenset[str]:
        """The module types this implementation provides."""
        ...

    async def create(self, spec: ModuleSpec) -> Any:
        """Build an instance of ``spec`` (heavy work here, once per module actor)."""
        ...

    async def execute(
        self, instance: Any, inputs: Mapping[str, Any], options: CallOptions
    ) -> Prediction:
        """Run one call; expected failures raise dspex errors (LMError, ParseError, ...)."""
        ...

    def info(self) -> dict[str, Any]:
        """A description for ``info()`` and telemetry."""
        ...

    def release(self, instance: Any) -> None:
        """``instance`` serves no more calls (its module stopped or was rebuilt)."""
        ...
