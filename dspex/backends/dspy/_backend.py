"""The dspy implementation: real DSPy 3.4.1 modules, run without blocking the event loop.

DSPy is imported on first use, by the one shared import of ``dspex._dspy_import`` (in a thread
of its own: importing it and LiteLLM takes seconds).
``dspy.configure`` is never called: the LM and adapter go per call through ``dspy.context``,
which lives in context variables and so follows each asyncio task and is copied into the worker
threads (owned by the runtime, shut down with it) that run DSPy's sync-only modules.

A program served by ``Module.wrap`` brings its own per-call scope (``open_call`` on its source,
see ``dspex.modules._proxy.ProgramCall``): each call runs inside one, which says what served
its predictors on the prediction, and names the program when its own code raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

from dspex import telemetry
from dspex._dspy_import import import_dspy, loaded
from dspex._kinds import KINDS
from dspex._threads import current_threads
from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.backends.dspy._cache import CACHING, Caching, install
from dspex.cache import Claims
from dspex.config import ADAPTER_CLASSES, Implementation, TwoStep
from dspex.errors import (
    ConfigError,
    DSPexError,
    LMConnectionError,
    LMError,
    LMTimeout,
    ModuleError,
    ParseError,
)
from dspex.lm._config import api_key_of, redact
from dspex.lm._prices import cost_of
from dspex.prediction import Prediction
from dspex.streaming._call import STREAM, CallStream
from dspex.streaming._events import StatusMessage, StreamChunk

#: Module types this implementation provides: every one dspex knows.
DSPY_MODULE_TYPES = frozenset(KINDS)


class DSPyInstance:
    """A built DSPy module with the LM and adapter its calls run under."""

    __slots__ = (
        "adapter",
        "dspy",
        "is_async",
        "lm",
        "module",
        "module_type",
        "open_call",
        "output_names",
        "spec",
    )

    def __init__(self, dspy: Any, spec: ModuleSpec, module: Any, lm: Any, adapter: Any):
        self.dspy = dspy
        self.spec = spec
        self.module_type = spec.module_type
        self.module = module
        self.lm = lm
        self.adapter = adapter
        # Modules without their own aforward run their sync forward in a worker thread.
        self.is_async = "aforward" in _own_methods(dspy, module)
        sig = spec.signature
        self.output_names = sig.output_names if sig is not None else ()
        # A program Module.wrap serves: what opens the scope of each of its calls (else None).
        opener = getattr(spec.program, "open_call", None) if spec.module_type == "Module" else None
        self.open_call: Callable[[], Any] | None = opener if callable(opener) else None

    @property
    def demos(self) -> int:
        """How many demos the module's predictors carry (a compiled program's included)."""
        return sum(len(predictor.demos) for predictor in self.module.predictors())


def _own_methods(dspy: Any, module: Any) -> set[str]:
    names: set[str] = set()
    for cls in type(module).__mro__:
        if cls in (dspy.Module, object) or cls.__name__ in ("BaseModule", "Module"):
            continue
        names.update(vars(cls))
    return names


class DSPyBackend:
    """Runs each module type on real DSPy 3.4.1; sync-only modules run in the threads for sync
    user code (``Config.sync_threads``; anyio's ``to_thread`` under one limiter).

    ``finish_threads``: a cancelled call whose sync module already runs in a thread (which
    nothing can stop) ends only when that thread returns, so that its end says the work
    stopped (a dspy worker process answers a cancelled call then, and is replaced if that
    takes longer than its grace period). Without it the call stops waiting at once.

    ``cache``: the response cache the calls' LM requests are answered from (the runtime's, or
    in a worker process its link to the service's; see :mod:`dspex.backends.dspy._cache`)."""

    name: Implementation = "dspy"

    def __init__(
        self, *, gc_freeze: bool = True, finish_threads: bool = False, cache: Claims | None = None
    ):
        self.gc_freeze = gc_freeze
        self.finish_threads = finish_threads
        self.cache = cache

    async def _in_pool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` in a thread with this task's context (dspy.context included)."""
        return await current_threads().run(fn, *args, finish=self.finish_threads, **kwargs)

    @property
    def module_types(self) -> frozenset[str]:
        """Every module type DSPy ships that makes sense to call directly, plus ``Module``."""
        return DSPY_MODULE_TYPES

    def info(self) -> dict[str, Any]:
        """The implementation and the DSPy version it runs."""
        return {"implementation": "dspy", "dspy_version": getattr(loaded(), "__version__", None)}

    def release(self, instance: DSPyInstance) -> None:
        """Nothing to do: a DSPy module in this process is garbage once unreferenced."""

    async def create(self, spec: ModuleSpec) -> DSPyInstance:
        """Build the DSPy module for ``spec`` (imports dspy on first use): for a sub-module of
        a wrapped program, a copy of it with the demos of ``spec``."""
        dspy = await import_dspy(gc_freeze=self.gc_freeze)
        if self.cache is not None:
            install()
        kind = KINDS[spec.module_type]
        if spec.lm is None and kind.inputs != "program":
            raise ConfigError(f"{spec.module_type} needs an LM: pass lm= or set Runtime(lm=...)")
        if spec.program is not None and kind.inputs != "program":
            # a wrapped program's sub-module: a copy of the very module it was optimized as
            module = spec.program.deepcopy()
            named = dict(module.named_predictors())
            for name, state in spec.predictors.items():
                named[name].demos = [dspy.Example(**demo) for demo in state.demos]
        else:
            module = kind.dspy_builder()(dspy, spec)
        if spec.demos:
            _set_demos(dspy, module, spec)
        lm = spec.lm.to_dspy() if spec.lm is not None else None
        if isinstance(spec.adapter, TwoStep):
            adapter = dspy.TwoStepAdapter(spec.adapter.lm.to_dspy())
        else:
            adapter = getattr(dspy, ADAPTER_CLASSES[spec.adapter])()
        return DSPyInstance(dspy, spec, module, lm, adapter)

    async def execute(
        self, instance: DSPyInstance, inputs: Mapping[str, Any], options: CallOptions
    ) -> Prediction:
        """Run one call under ``dspy.context(lm=..., adapter=...)``; map DSPy's errors."""
        dspy = instance.dspy
        lm = instance.lm
        overrides = options.lm_overrides()
        if overrides and lm is not None:
            lm = lm.copy(**overrides)
        # DSPy keeps up to 10,000 calls in each LM's history, and its last 10,000 predictions
        # (with their inputs) in one process-wide trace: a service would carry that memory for
        # nothing (dspex reports calls through its own metrics and spans). So no history, and a
        # trace of this call's own, gone with it (BestOfN and Refine read and extend it).
        # track_usage: token counts on the prediction, as the native client reports them.
        context: dict[str, Any] = {
            "adapter": instance.adapter,
            "disable_history": True,
            "trace": [],
            "track_usage": True,
        }
        if lm is not None:
            context["lm"] = lm
        call = instance.open_call() if instance.open_call is not None else None
        stream = STREAM.get() if call is None else None  # a wrapped program's modules stream
        spec_lm = instance.spec.lm
        caching = None
        if self.cache is not None and stream is None and spec_lm is not None:
            if spec_lm.cache if options.cache is None else options.cache:
                caching = Caching(self.cache, options.rollout_id, options.refresh)
            CACHING.set(caching)  # the call's task: a worker reads its hits there after it
        try:
            with dspy.context(**context), call or contextlib.nullcontext():
                if stream is not None:
                    result = await self._streamed(instance, inputs, stream)
                elif instance.is_async:
                    result = await instance.module.acall(**inputs)
                else:
                    result = await self._in_pool(instance.module, **inputs)
        except DSPexError:
            raise
        except Exception as exc:
            secret = api_key_of(instance.spec.lm)
            error = map_dspy_error(exc, secret)
            if call is not None and type(error) is ModuleError:  # the program's own code raised
                error = call.error(exc, redact(str(exc), secret))
            chain = _chain_text(exc)
            if redact(chain, secret) == chain:  # nothing to mask: keep the cause
                raise error from exc
            failed: DSPexError | None = error  # it shows the key: raise with no cause/context
        else:
            failed = None
        if failed is not None:
            raise failed
        if caching is not None and caching.hits:
            trace.get_current_span().set_attribute(telemetry.CACHE_HITS, caching.hits)
        pred = to_prediction(result, instance.output_names)
        return call.result(pred) if call is not None else pred

    async def _streamed(
        self, instance: DSPyInstance, inputs: Mapping[str, Any], stream: CallStream
    ) -> Any:
        """Run the call through ``dspy.streamify``, a ``StreamListener`` on every output field
        of every predictor (reused across a predictor's calls, as in a ReAct's loop), putting
        what it yields on ``stream`` as dspex events; the module's result."""
        dspy = instance.dspy
        listeners = [
            dspy.streaming.StreamListener(
                field, predict=predictor, predict_name=name, allow_reuse=True
            )
            for name, predictor in instance.module.named_predictors()
            for field in predictor.signature.output_fields
        ]

        streamed = dspy.streamify(
            _Streamed(instance, self._in_pool), stream_listeners=listeners, is_async_program=True
        )
        response, status = dspy.streaming.StreamResponse, dspy.streaming.StatusMessage
        result = None
        async for value in streamed(**inputs):
            if isinstance(value, response):
                path = stream.path(value.predict_name)
                chunk = StreamChunk(
                    path, value.signature_field_name, value.chunk, value.is_last_chunk
                )
                await stream.put(chunk)
            elif isinstance(value, status):
                await stream.put(StatusMessage(value.message))
            elif isinstance(value, dspy.Prediction):
                result = value
        return result


class _Streamed:
    """What ``dspy.streamify`` runs: the module's predictors, and its call in the threads for
    sync user code (DSPy's own ``asyncify`` would use threads of its own)."""

    def __init__(self, instance: DSPyInstance, in_pool: Callable[..., Any]):
        self.module = instance.module
        self.is_async = instance.is_async
        self.in_pool = in_pool

    def named_predictors(self) -> Any:
        return self.module.named_predictors()

    async def acall(self, **kwargs: Any) -> Any:
        if self.is_async:
            return await self.module.acall(**kwargs)
        return await self.in_pool(self.module, **kwargs)


def to_prediction(result: Any, output_names: tuple[str, ...]) -> Prediction:
    """A dspex Prediction from what a DSPy module returned."""
    if hasattr(result, "items") and hasattr(result, "_store"):
        fields = dict(result.items())
        completions = getattr(result, "_completions", None)
        rows: list[dict[str, Any]] | None = None
        if completions is not None and len(completions) > 1:
            columns = dict(completions.items())  # DSPy's Completions: field -> one value per row
            rows = [{k: v[i] for k, v in columns.items()} for i in range(len(completions))]
        usage = result.get_lm_usage() if hasattr(result, "get_lm_usage") else None
        flat = _flat_usage(usage)
        cost = cost_of(usage) if flat and isinstance(usage, Mapping) else None  # per model
        return Prediction(fields, implementation="dspy", completions=rows, usage=flat, cost=cost)
    if isinstance(result, Mapping):
        return Prediction(dict(result), implementation="dspy")
    return Prediction({"output": result}, implementation="dspy")


def _flat_usage(usage: Any) -> dict[str, int] | None:
    """DSPy reports usage per model; sum the integer counters."""
    if not isinstance(usage, Mapping):
        return None
    total: dict[str, int] = {}
    for per_model in usage.values():
        if isinstance(per_model, Mapping):
            for key, value in per_model.items():
                if isinstance(value, int):
                    total[key] = total.get(key, 0) + value
    return total


def _chain_text(exc: BaseException) -> str:
    """The messages of ``exc`` and of every exception chained to it."""
    texts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` or an exception it was raised from is a timeout (DSPy's default engine
    raises a read timeout as a transport error, from its transport's ReadTimeout)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "Timeout" in type(current).__name__ or isinstance(current, TimeoutError):
            return True
        current = current.__cause__ or current.__context__
    return False


def map_dspy_error(exc: Exception, secret: str | None = None) -> DSPexError:
    """DSPy's and LiteLLM's exceptions as dspex errors, ``secret`` masked in the message."""
    name = type(exc).__name__
    text = redact(str(exc), secret)
    if name == "AdapterParseError":
        return ParseError(
            text,
            adapter_name=getattr(exc, "adapter_name", "dspy"),
            lm_response=getattr(exc, "lm_response", None),
            parsed_result=getattr(exc, "parsed_result", None),
        )
    lm_family = any(c.__name__ == "LMError" for c in type(exc).__mro__)  # DSPy's LM errors
    if lm_family or type(exc).__module__.startswith(("litellm", "openai", "httpx", "aiohttp")):
        status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
        message = f"LM request failed: {name}: {text}"
        if _timed_out(exc):  # the LM's own timeout, not the call's deadline
            return LMTimeout(
                f"the LM did not answer within its timeout (LM.timeout): {name}: {text}",
                status=status,
            )
        if "Connection" in name or "Transport" in name:
            return LMConnectionError(message, status=status)
        return LMError(message, status=status)
    return ModuleError(f"the dspy implementation raised {name}: {text}")


def _set_demos(dspy: Any, module: Any, spec: ModuleSpec) -> None:
    predictors = module.predictors()
    if len(predictors) != 1:
        raise ConfigError(
            f"demos= needs a module with one predictor; {spec.module_type} has {len(predictors)}"
        )
    predictors[0].demos = [dspy.Example(**demo) for demo in spec.demos]
