"""The stand-in a wrapped program calls instead of one of its predictors.

A :class:`PredictorProxy` takes the place of a served sub-module (a Predict or a
ChainOfThought) in the program's copy. Called from a sync ``forward`` (a worker thread), it
sends the call to the event loop and waits; awaited through ``acall`` (an ``aforward`` on the
loop), it awaits the module actor directly. Either way the program gets a ``dspy.Prediction``,
as the DSPy module would have returned, and the call keeps the program call's deadline.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dspex.errors import ModuleError, Timeout
from dspex.lm._client import CALL_DEADLINE
from dspex.prediction import Prediction

if TYPE_CHECKING:
    from dspex.modules._facade import ModuleRef

#: Call keywords that change what a DSPy predictor does for one call: such a call runs on the
#: predictor's own DSPy module (``config`` is merged instead when it holds LM overrides only).
_OWN_KEYWORDS = frozenset({"signature", "demos", "lm"})
_CALL_CONFIG = frozenset({"temperature", "max_tokens", "n"})


def to_dspy_prediction(dspy: Any, pred: Prediction, signature: Any) -> Any:
    """``pred`` as the ``dspy.Prediction`` DSPy's Predict returns: the first completion's
    fields, and every completion in ``completions``."""
    return dspy.Prediction.from_completions(list(pred.completions), signature=signature)


class PredictorProxy:
    """Runs one predictor of a wrapped program on its dspex module actor.

    Attributes other than the call methods (``signature``, ``demos``, ``predict``, ...) are the
    DSPy module's own, read from the copy the program was built with.
    """

    __slots__ = ("_dspy", "_loop", "_module", "_options", "_path", "_ref", "_signature")

    def __init__(
        self,
        dspy: Any,
        module: Any,
        ref: ModuleRef,
        path: str,
        loop: asyncio.AbstractEventLoop,
        options: dict[str, Any],
    ):
        self._dspy = dspy
        self._module = module
        self._ref = ref
        self._path = path
        self._loop = loop
        self._options = options
        predict = module.predict if type(module) is dspy.ChainOfThought else module
        self._signature = predict.signature

    def __repr__(self) -> str:
        return f"<dspex predictor {self._path!r} served by {self._ref!r}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The predictor's sync call, from a program's ``forward`` in a worker thread: the call
        runs on the event loop and this thread waits for it. ModuleError when called on the
        event loop itself (an ``aforward`` must ``await ....acall(...)``)."""
        options = self._call_options(args, kwargs)
        if options is None:
            return self._module(*args, **kwargs)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise ModuleError(
                f"predictor {self._path!r} was called synchronously on the event loop, which "
                f"would block it; in an aforward, use `await self.{self._path}.acall(...)`"
            )
        timeout = self._timeout()
        future = asyncio.run_coroutine_threadsafe(self._run(kwargs, options, timeout), self._loop)
        return future.result()

    forward = __call__

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """The predictor's async call, from a program's ``aforward``: awaits its module actor."""
        options = self._call_options(args, kwargs)
        if options is None:
            return await self._module.acall(*args, **kwargs)
        return await self._run(kwargs, options, self._timeout())

    aforward = acall

    def _call_options(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The call's LM overrides (the predictor's config, then the call's ``config=``), or
        None when this call must run on the DSPy module itself (it passes positional
        arguments, which DSPy refuses, or changes the signature, demos, LM or other config)."""
        if args or not _OWN_KEYWORDS.isdisjoint(kwargs):
            return None
        config = kwargs.pop("config", None)
        if config is None:
            return self._options
        if not isinstance(config, dict) or not _CALL_CONFIG.issuperset(config):
            kwargs["config"] = config
            return None
        return {**self._options, **config}

    def _timeout(self) -> float | None:
        """What is left of the program call's deadline (None: the call has none)."""
        deadline = CALL_DEADLINE.get()
        if deadline is None:
            return None
        left = deadline - self._loop.time()
        if left <= 0:
            raise Timeout(
                f"predictor {self._path!r} was not called: the program call's deadline passed"
            )
        return left

    async def _run(
        self, inputs: dict[str, Any], options: dict[str, Any], timeout: float | None
    ) -> Any:
        pred = await self._ref.execute(inputs, timeout=timeout, **options)
        return to_dspy_prediction(self._dspy, pred, self._signature)
