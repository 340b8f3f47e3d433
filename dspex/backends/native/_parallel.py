"""Native Parallel: many inputs through one native Predict or ChainOfThought, concurrently."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar

import anyio

from dspex.backends._spec import NO_OPTIONS, CallOptions, ModuleSpec
from dspex.backends.native._module import predictor, total_usage
from dspex.backends.native._predict import NativePredict, check_inputs
from dspex.errors import ConfigError, DSPexError, InputError
from dspex.lm import LMClient
from dspex.prediction import Prediction


class NativeParallel:
    """DSPy's ``Parallel`` over one module: ``run({"batch": [inputs, ...]})`` returns
    ``{"results": [...]}`` with, in batch order, each item's Prediction or its error (a
    :class:`~dspex.errors.DSPexError`: input, LM or parse); at most ``num_threads`` items run at
    once (on the event loop: no threads), in one anyio task group: the call's deadline, or a
    bug in one item, cancels them all."""

    __slots__ = ("module", "num_threads")
    module_type: ClassVar[str] = "Parallel"

    def __init__(self, module: NativePredict, num_threads: int | None = 8):
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 0):
            raise ConfigError(f"Parallel num_threads= must be an int >= 1, got {num_threads!r}")
        self.module = module
        self.num_threads = num_threads or 8  # as dspy.Parallel: unset or 0 means the default

    @classmethod
    def from_spec(cls, spec: ModuleSpec, client: LMClient) -> NativeParallel:
        """Build from a spec: options ``module`` (``"Predict"`` or ``"ChainOfThought"``) and
        ``num_threads`` (default 8)."""
        return cls(predictor(spec, client, inner=True), spec.options.get("num_threads", 8))

    async def run(self, values: dict[str, Any], options: CallOptions = NO_OPTIONS) -> Prediction:
        """Run every item of ``values["batch"]``; cancelling the call cancels them all."""
        batch = values.get("batch")
        if not isinstance(batch, (list, tuple)):
            raise InputError("Parallel takes batch=[{...}, ...]: a list of input mappings")
        results: list[Any] = [None] * len(batch)
        items = iter(enumerate(batch))

        async def worker() -> None:
            for idx, item in items:  # one shared iterator: each item is taken once
                results[idx] = await self._one(item, options)

        await gather_all([worker] * min(self.num_threads, len(batch)))
        done = [r for r in results if isinstance(r, Prediction)]
        return Prediction({"results": results}, implementation="native", usage=total_usage(done))

    async def _one(self, item: Any, options: CallOptions) -> Prediction | DSPexError:
        try:
            if not isinstance(item, Mapping):
                raise InputError(f"each batch item must be a mapping, got {type(item).__name__}")
            return await self.module.run(check_inputs(self.module.signature, item), options)
        except DSPexError as err:  # the item's own failure; a bug elsewhere crashes the module
            return err


async def gather_all(workers: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
    """Run ``workers`` concurrently in an anyio task group: if one raises, or the caller is
    cancelled (its deadline), the rest are cancelled and waited for (no task outlives the
    call); the first error is re-raised as itself."""
    failures: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def guarded(worker: Callable[[], Coroutine[Any, Any, None]]) -> None:
            try:
                await worker()
            except Exception as exc:
                failures.append(exc)
                group.cancel_scope.cancel()  # its siblings stop: the call has failed

        for worker in workers:
            group.start_soon(guarded, worker)
    if failures:
        raise failures[0]
