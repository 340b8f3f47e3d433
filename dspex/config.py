"""Config: how the router picks implementations, when it falls back, and the runtime's limits.

Build it from keywords (``Config(implementation_preference="native_first")``), from ``DSPEX_*``
environment variables (``Config.from_env()``), or change it at run time through the router
(``await runtime.configure(...)``). Invalid values and unknown keys raise ``ConfigError`` naming
the key, the allowed values and the closest valid key; ``Config.from_env()`` logs a warning for
each ``DSPEX_*`` variable it does not know. ``"python"`` is accepted wherever ``"dspy"`` is, and
``"python_first"`` for ``"dspy_first"``; module types may be written in snake_case
(``"chain_of_thought"`` for ``"ChainOfThought"``).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeGuard

import msgspec

from dspex._dspy_import import imported_class
from dspex._kinds import KINDS
from dspex.actors import Overflow
from dspex.errors import ConfigError
from dspex.lm import LM

log = logging.getLogger("dspex.config")

Implementation = Literal["native", "dspy"]
Preference = Literal["auto", "native_first", "dspy_first"]
AdapterName = Literal["chat", "json", "xml"]

IMPLEMENTATIONS: tuple[Implementation, ...] = ("native", "dspy")
PREFERENCES: tuple[Preference, ...] = ("auto", "native_first", "dspy_first")
#: Each adapter by its name, with the DSPy class it is (native's has the same name).
ADAPTER_CLASSES: dict[AdapterName, str] = {
    "chat": "ChatAdapter",
    "json": "JSONAdapter",
    "xml": "XMLAdapter",
}
ADAPTERS: tuple[AdapterName, ...] = tuple(ADAPTER_CLASSES)
_ALIASES = {"python": "dspy", "python_first": "dspy_first"}

#: Every module type dspex runs (one record each in ``dspex._kinds``): the dspy implementation
#: has them all, native a subset.
MODULE_TYPES: tuple[str, ...] = tuple(KINDS)

#: ``DSPEX_*`` variables read outside :class:`Config` (not warned about as unknown), with what
#: each sets.
OTHER_VARIABLES: dict[str, str] = {
    "DSPEX_CACHE_DIR": "Where the embedded LM's assembled models are kept (`~/.cache/dspex`).",
}


def _fold(name: str) -> str:
    """A name without case or underscores: ``chain_of_thought`` and ``ChainOfThought`` meet."""
    return name.replace("_", "").lower()


_MODULE_TYPES_FOLDED = {_fold(name): name for name in MODULE_TYPES}


def _did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """``" (did you mean 'x'?)"`` for the known name closest to ``name`` (case and underscores
    aside; ``prefix``, shared by all, left out of the comparison), or ``""``."""
    by_fold = {_fold(k.removeprefix(prefix)): k for k in known}
    close = difflib.get_close_matches(_fold(name.removeprefix(prefix)), by_fold, n=1)
    return f" (did you mean {by_fold[close[0]]!r}?)" if close else ""


def implementation_name(value: object, key: str = "implementation") -> Implementation:
    """Normalize an implementation name (``"python"`` -> ``"dspy"``) or raise ConfigError."""
    name = _ALIASES.get(value, value) if isinstance(value, str) else value
    if name not in IMPLEMENTATIONS:
        raise ConfigError(f"{key} must be one of 'native', 'dspy' (or 'python'), got {value!r}")
    return name


def module_type_name(value: object, key: str = "module type") -> str:
    """Normalize a module type's name, ignoring case and underscores (``"chain_of_thought"`` ->
    ``"ChainOfThought"``); ConfigError naming the known module types if there is none such."""
    name = _MODULE_TYPES_FOLDED.get(_fold(value)) if isinstance(value, str) else None
    if name is None:
        hint = _did_you_mean(value, MODULE_TYPES) if isinstance(value, str) else ""
        raise ConfigError(
            f"{key}: unknown module type {value!r}{hint}; known: {', '.join(MODULE_TYPES)} "
            "(case and underscores are ignored: 'chain_of_thought' works too)"
        )
    return name


def _check(key: str, ok: bool, allowed: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def _number(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a real number (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_positive_number(value: object) -> bool:
    """Whether ``value`` is a number > 0 (a bool, NaN or string is not)."""
    return _number(value) and value > 0


def _check_keys(keys: Iterable[str], known: tuple[str, ...], prefix: str) -> None:
    """ConfigError for the first of ``keys`` not ``known``, with the closest known key."""
    for key in keys:
        if key not in known:
            name = f"{prefix}.{key}" if prefix else key
            raise ConfigError(
                f"unknown config key {name!r}{_did_you_mean(key, known)}; known: {', '.join(known)}"
            )


class _Strict(msgspec.StructMeta):
    """The configuration structs' metaclass: a positional or unknown argument is a ConfigError
    naming the closest known key (msgspec would raise a bare TypeError)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise ConfigError(f"{cls.__name__} takes keyword arguments only, got {args!r}")
        _check_keys(kwargs, cls.__struct_fields__, getattr(cls, "_prefix", ""))
        return super().__call__(**kwargs)


class AdaptiveConfig(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """The adaptive policy (``implementation_preference="auto"``).

    Per module type and implementation it keeps an EWMA of latency (weight ``alpha``) and of
    success. Once both have ``min_samples`` calls, it routes to the one with the better success
    rate when they differ by more than ``success_margin``, else to the faster one; a fraction
    ``explore_rate`` of calls goes to the other so its figures stay fresh.

    Raises ConfigError for an unknown key or a value out of range.
    """

    _prefix: ClassVar[str] = "adaptive"

    alpha: float = 0.2
    """The weight of the newest sample in the latency and success EWMAs, in (0, 1]."""
    explore_rate: float = 0.05
    """The fraction of calls sent to the implementation that is behind, so its figures stay fresh;
    0 never explores. dspy is explored only once DSPy is loaded: until then such calls stay on
    native and DSPy's import starts in the background, so no live call waits for it."""
    min_samples: int = 10
    """Calls each implementation needs before the policy compares them."""
    success_margin: float = 0.05
    """How much better a success rate must be to win over the faster implementation."""

    def __post_init__(self) -> None:
        _check(
            "adaptive.alpha", _number(self.alpha) and 0 < self.alpha <= 1, "in (0, 1]", self.alpha
        )
        _check(
            "adaptive.explore_rate",
            _number(self.explore_rate) and 0 <= self.explore_rate <= 1,
            "in [0, 1]",
            self.explore_rate,
        )
        _check(
            "adaptive.min_samples",
            _integer(self.min_samples) and self.min_samples >= 1,
            "an int >= 1",
            self.min_samples,
        )
        _check(
            "adaptive.success_margin",
            _number(self.success_margin) and 0 <= self.success_margin <= 1,
            "in [0, 1]",
            self.success_margin,
        )


class CircuitConfig(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """The native circuit breaker per module type, kept by the router.

    After ``crash_threshold`` calls of one module type crash in native code within ``window``
    seconds (each re-run on dspy when fallback is allowed), the router opens that type's native
    circuit: no call of that type is routed to native until ``cooldown`` seconds later, when one
    probe call tries native; its success closes the circuit, its failure opens it again. A
    module actor that itself crashes ``crash_threshold`` times within ``window`` (its own state
    broke) is restarted to serve on dspy.

    Raises ConfigError for an unknown key or a value out of range.
    """

    _prefix: ClassVar[str] = "circuit"

    crash_threshold: int = 3
    """Native crashes of one module type within `window` that open its native circuit (and
    crashes of one module actor that restart it on dspy)."""
    window: float = 60.0
    """The window, in seconds, in which `crash_threshold` crashes are counted."""
    cooldown: float = 30.0
    """Seconds an open circuit waits before one probe call tries native again."""

    def __post_init__(self) -> None:
        _check(
            "circuit.crash_threshold",
            _integer(self.crash_threshold) and self.crash_threshold >= 1,
            "an int >= 1",
            self.crash_threshold,
        )
        _check("circuit.window", is_positive_number(self.window), "> 0", self.window)
        _check("circuit.cooldown", is_positive_number(self.cooldown), "> 0", self.cooldown)


def cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class WorkerConfig(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """How the dspy implementation's worker processes run (see `Config.dspy_workers`).

    A worker past ``max_requests`` calls, or ``max_rss_mb`` megabytes of resident memory,
    takes no new call, finishes those it runs and is replaced by a fresh process (None: never).
    A call whose caller gave up (its deadline passed) is cancelled in its worker; if it has not
    stopped ``grace`` seconds later, the worker is killed and replaced (its other calls are
    retried once on another worker).

    Raises ConfigError for an unknown key or a value out of range.
    """

    _prefix: ClassVar[str] = "workers"

    max_requests: int | None = None
    """Calls after which a worker is recycled (None: never)."""
    max_rss_mb: float | None = None
    """Resident memory, in MB, past which a worker is recycled (None: never)."""
    grace: float = 2.0
    """Seconds a cancelled call may take to stop before its worker is killed."""

    def __post_init__(self) -> None:
        _check(
            "workers.max_requests",
            self.max_requests is None or (_integer(self.max_requests) and self.max_requests >= 1),
            "None or an int >= 1",
            self.max_requests,
        )
        _check(
            "workers.max_rss_mb",
            self.max_rss_mb is None or is_positive_number(self.max_rss_mb),
            "None or MB > 0",
            self.max_rss_mb,
        )
        _check("workers.grace", is_positive_number(self.grace), "seconds > 0", self.grace)


class CacheConfig(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """The LM response cache both implementations share (see ``LM.cache``).

    Replies are kept in memory, least recently used first out past ``memory_mb`` megabytes;
    with ``disk`` (a folder) they are also written there, where a restarted service finds
    them. ``memory_mb=0`` and no ``disk`` turns the cache off for the runtime.

    Raises ConfigError for an unknown key or a value out of range.
    """

    _prefix: ClassVar[str] = "cache"

    memory_mb: float = 256.0
    """Megabytes of replies (and their keys) kept in memory; 0 keeps none."""
    disk: str | None = None
    """A folder for the on-disk cache, which outlives the process (None: memory only)."""
    disk_mb: float = 1024.0
    """Megabytes the on-disk cache may hold; the oldest replies go first past it."""

    def __post_init__(self) -> None:
        _check(
            "cache.memory_mb",
            _number(self.memory_mb) and self.memory_mb >= 0,
            "MB >= 0",
            self.memory_mb,
        )
        _check(
            "cache.disk",
            self.disk is None or (isinstance(self.disk, str) and self.disk.strip() != ""),
            "None or a folder's path",
            self.disk,
        )
        _check("cache.disk_mb", is_positive_number(self.disk_mb), "MB > 0", self.disk_mb)

    @property
    def enabled(self) -> bool:
        """Whether replies are kept anywhere."""
        return self.memory_mb > 0 or self.disk is not None


class TwoStep(msgspec.Struct, frozen=True):
    """DSPy's TwoStepAdapter as a module's adapter: ``adapter=dspex.TwoStep(small_lm)``.

    The module's LM answers a plain prompt in its own words (reasoning models do better
    without a format to follow); ``lm``, a smaller LM, then extracts the output fields from
    that answer with the ChatAdapter (and its JSON fallback). Each call is two LM calls. A
    ``dspy.TwoStepAdapter`` given as ``adapter=`` means the same. Raises ConfigError when
    ``lm`` is not a dspex.LM or a dspy.LM.
    """

    lm: LM
    """The extraction LM (a ``dspy.LM`` is converted)."""

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "lm", LM.of(self.lm, "TwoStep.lm"))


def adapter_of(value: object) -> AdapterName | TwoStep:
    """The adapter ``value`` names: one of :data:`ADAPTERS`, a :class:`TwoStep` or a
    ``dspy.TwoStepAdapter``; raises ConfigError for anything else."""
    if isinstance(value, TwoStep):
        return value
    two_step = imported_class("dspy.adapters.two_step_adapter", "TwoStepAdapter")
    if two_step is not None and isinstance(value, two_step):
        return TwoStep(value.extraction_model)  # type: ignore[attr-defined]
    if isinstance(value, str) and value in ADAPTERS:
        return value
    raise ConfigError(
        f"adapter must be one of {', '.join(map(repr, ADAPTERS))} or a dspex.TwoStep, got {value!r}"
    )


class RayWorkers(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """The dspy implementation's workers as Ray actors, across the machines of a Ray cluster:
    ``Config(dspy_workers=RayWorkers(num=4, num_cpus=1, address="ray://head:10001"))``.
    Needs ``pip install "dspex[ray]"``, and dspex and DSPy installed on every node.

    The workers are the same as local ones (each runs many calls at once, supervised by dspex,
    its calls retried once when it dies); Ray's own restarts and retries are off, and the
    actors are spread over the nodes. Raises ConfigError for an unknown key or a bad value.
    """

    num: int | None = None
    """Workers to start (None: the cluster's CPUs divided by ``num_cpus``, at least 1)."""
    num_cpus: float = 1.0
    """CPUs Ray reserves for each worker."""
    address: str | None = None
    """The Ray cluster to connect to (None: the one this process runs already, else a new
    local one, as ``ray.init()`` does)."""

    def __post_init__(self) -> None:
        _check(
            "RayWorkers.num",
            self.num is None or (_integer(self.num) and self.num >= 1),
            "None or an int >= 1",
            self.num,
        )
        _check("RayWorkers.num_cpus", is_positive_number(self.num_cpus), "> 0", self.num_cpus)
        _check(
            "RayWorkers.address",
            self.address is None or isinstance(self.address, str),
            "None or a str",
            self.address,
        )


class Rollout(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """A canary rollout of native for one module type.

    ``native_percent`` of calls go to native, the rest to dspy; a call with a request key always
    lands on the same side (a user's session stays on one implementation). Once both sides have
    ``min_calls`` (counted over every module of the type, a wrapped program's predictors
    included, since the rollout was set), the router rolls native back to 0% when its error
    rate exceeds dspy's by more than ``max_error_rate_increase``, or its latency exceeds dspy's
    times ``max_latency_ratio``.

    Raises ConfigError for an unknown key or a value out of range.
    """

    _prefix: ClassVar[str] = "rollout"

    native_percent: float = 0.0
    """The percentage of the module type's calls sent to native, the rest to dspy; sticky per
    request `key`."""
    max_error_rate_increase: float = 0.05
    """Roll native back to 0% when its error rate exceeds dspy's by more than this."""
    max_latency_ratio: float | None = None
    """Roll native back to 0% when its latency exceeds dspy's times this (None: latency never
    rolls back)."""
    min_calls: int = 20
    """Calls both sides need before the rollback rules apply."""

    def __post_init__(self) -> None:
        _check(
            "rollout.native_percent",
            _number(self.native_percent) and 0 <= self.native_percent <= 100,
            "a percentage in [0, 100]",
            self.native_percent,
        )
        _check(
            "rollout.max_error_rate_increase",
            _number(self.max_error_rate_increase) and 0 <= self.max_error_rate_increase <= 1,
            "in [0, 1]",
            self.max_error_rate_increase,
        )
        _check(
            "rollout.max_latency_ratio",
            self.max_latency_ratio is None or is_positive_number(self.max_latency_ratio),
            "None or > 0",
            self.max_latency_ratio,
        )
        _check(
            "rollout.min_calls",
            _integer(self.min_calls) and self.min_calls >= 1,
            "an int >= 1",
            self.min_calls,
        )


class Budget(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """A limit on LM use: ``max_tokens`` (prompt and completion tokens) and/or ``max_cost`` (US
    dollars, priced by LiteLLM's price map; calls of a model it does not price cost 0 here).

    Set for the runtime (``Config(budget=...)``), per module type (``Config(budgets={...})``)
    or per call (``execute(..., budget=...)``). Once it is spent, a call raises
    :class:`~dspex.BudgetExceeded` before its next LM request; calls already running finish,
    so concurrent calls overshoot by at most what those in flight use.

    Raises ConfigError for an unknown key, a value out of range, or neither limit."""

    _prefix: ClassVar[str] = "budget"

    max_tokens: int | None = None
    """Tokens (prompt and completion) the LM calls may use in all (None: no limit)."""
    max_cost: float | None = None
    """US dollars the LM calls may cost in all (None: no limit)."""

    def __post_init__(self) -> None:
        _check(
            "budget.max_tokens",
            self.max_tokens is None or (_integer(self.max_tokens) and self.max_tokens >= 1),
            "None or an int >= 1",
            self.max_tokens,
        )
        _check(
            "budget.max_cost",
            self.max_cost is None or is_positive_number(self.max_cost),
            "None or dollars > 0",
            self.max_cost,
        )
        if self.max_tokens is None and self.max_cost is None:
            raise ConfigError("a Budget needs max_tokens, max_cost or both")

    def spent(self, tokens: int, cost: float) -> bool:
        """Whether ``tokens`` and ``cost`` used leave nothing of this budget."""
        return (self.max_tokens is not None and tokens >= self.max_tokens) or (
            self.max_cost is not None and cost >= self.max_cost
        )

    def describe(self) -> str:
        """What it allows, in words: ``1000 tokens``, ``$0.50``, or both."""
        parts = []
        if self.max_tokens is not None:
            parts.append(f"{self.max_tokens} tokens")
        if self.max_cost is not None:
            parts.append(f"${self.max_cost:g}")
        return " and ".join(parts)


class Shadow(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """Shadow comparison for one module type: a ``rate`` of calls also run on the other
    implementation in the background (never delaying or failing the caller), their outputs
    compared field by field. At most ``max_in_flight`` shadow calls run per module at once and
    the router keeps the last ``max_divergences`` divergences.

    Raises ConfigError for an unknown key or a value out of range."""

    _prefix: ClassVar[str] = "shadow"

    rate: float = 0.1
    """The fraction of calls also run on the other implementation, in the background."""
    max_in_flight: int = 8
    """Shadow calls that may run at once per module; past it a call is not shadowed."""
    max_divergences: int = 100
    """How many of the latest divergences (inputs and both outputs) the router keeps."""

    def __post_init__(self) -> None:
        _check("shadow.rate", _number(self.rate) and 0 <= self.rate <= 1, "in [0, 1]", self.rate)
        _check(
            "shadow.max_in_flight",
            _integer(self.max_in_flight) and self.max_in_flight >= 1,
            "an int >= 1",
            self.max_in_flight,
        )
        _check(
            "shadow.max_divergences",
            _integer(self.max_divergences) and self.max_divergences >= 0,
            "an int >= 0",
            self.max_divergences,
        )


class Config(msgspec.Struct, metaclass=_Strict, frozen=True, kw_only=True):
    """Routing, fallback and limits of a runtime; each field is described where it is declared
    and in the documentation's configuration reference, with its ``DSPEX_*`` variable.

    Module types are one of :data:`MODULE_TYPES`, in any case, with or without underscores
    (``"chain_of_thought"``); they are stored under their canonical names. Raises ConfigError
    for an unknown key (naming the closest known one), an unknown module type or a bad value.
    """

    implementation_preference: Preference = "auto"
    """`auto` (adaptive on live latency and success), `native_first` or `dspy_first`
    (`python_first`)."""
    allow_fallback: bool = True
    """Re-run a call on dspy when native fails with an LM or parse error, or crashes."""
    module_overrides: dict[str, Implementation] = {}
    """Module type -> implementation for every call of that type, e.g. `{"ReAct": "dspy"}`;
    environment: `ReAct=dspy,Predict=native`."""
    adapter: AdapterName = "chat"
    """`chat` (with DSPy's JSON fallback), `json` or `xml` (with the JSON fallback too), for
    modules created without `adapter=`."""
    adaptive: AdaptiveConfig = AdaptiveConfig()
    """The adaptive policy of `auto`: an `AdaptiveConfig` or a dict of its keys."""
    circuit: CircuitConfig = CircuitConfig()
    """The native circuit breaker: a `CircuitConfig` or a dict of its keys."""
    mailbox_size: int = 1024
    """Calls a module queues while `max_concurrency` run: it accepts `max_concurrency +
    mailbox_size` calls at a time, and past that the `overload` policy applies."""
    max_concurrency: int = 256
    """Calls one module runs at once."""
    call_timeout: float | None = None
    """The default deadline of a call in seconds (None: none); at it the call's work, its LM
    request included, is cancelled and the caller gets `Timeout`."""
    overload: Overflow = "raise"
    """When a module already has `max_concurrency` calls running and `mailbox_size` waiting:
    `raise` fails the call at once with `Overloaded`; `wait` waits for room up to the call's
    deadline."""
    drain_timeout: float = 10.0
    """Seconds shutdown lets calls in flight finish before cancelling them."""
    max_connections: int = 100
    """The native LM client's connection pool, per runtime. Read when the runtime starts."""
    sync_threads: int = 32
    """Threads that run sync user code at once: sync ReAct tools and reward functions, and,
    with `dspy_workers=0`, sync DSPy modules and programs' `forward` (each dspy worker
    process runs up to 32 of its own). A call cancelled at its deadline stops waiting at
    once; the thread it leaves running counts until it returns. `metrics().threads` shows
    them. Read when the runtime starts."""
    max_restarts: int = 100
    """Restarts each module may take within `max_seconds` (a budget of its own); past it that
    module alone stops, its handle raises `ModuleStopped`, and the others keep serving."""
    max_seconds: float = 5.0
    """The window, in seconds, of `max_restarts`."""
    dspy_workers: int | RayWorkers = msgspec.field(default_factory=cores)
    """Worker processes the dspy implementation runs in (each its own event loop, many calls at
    once), started with the first dspy call, or at start with `preload_dspy`; default: the
    cores this process may use (at least 1); 0 runs DSPy in this process, on worker threads;
    a `RayWorkers` runs them as Ray actors across a cluster. Read when the runtime starts."""
    workers: WorkerConfig = WorkerConfig()
    """The worker processes' recycling and cancellation: a `WorkerConfig` or a dict of its
    keys. Read when the runtime starts."""
    preload_dspy: bool = False
    """Start the dspy implementation while the runtime starts instead of with the first dspy
    module or fallback, whose call would wait for it: the worker processes, each taking calls
    when the start returns (the first start in a process imports DSPy and LiteLLM, about 3-5 s,
    in a process of its own); with `dspy_workers=0`, DSPy's import in this process. Read when
    the runtime starts."""
    gc_freeze: bool = True
    """Once DSPy and LiteLLM are imported, collect and `gc.freeze()` every object alive, so full
    collections skip those ~400,000 objects instead of pausing the loop ~0.2 s each.
    Process-wide."""
    rollout: dict[str, Rollout] = {}
    """Module type -> `Rollout`: a canary percentage of native, with automatic rollback.
    Environment: a JSON object."""
    shadow: dict[str, Shadow] = {}
    """Module type -> `Shadow`: run the other implementation too on a sample of calls and compare.
    Environment: a JSON object."""
    cache: CacheConfig = CacheConfig()
    """The LM response cache native and dspy share: a `CacheConfig` or a dict of its keys
    (`memory_mb`, `disk`, `disk_mb`). Read when the runtime starts."""
    budget: Budget | None = None
    """A `Budget` of LM tokens and/or cost for every call of the runtime (None: no limit).
    Environment: a JSON object, `{"max_tokens": 100000}`."""
    budgets: dict[str, Budget] = {}
    """Module type -> `Budget`: a limit on the LM use of every module of that type (a wrapped
    program's predictors included). Environment: a JSON object."""

    def __post_init__(self) -> None:
        raw: object = self.implementation_preference
        pref = _ALIASES.get(raw, raw) if isinstance(raw, str) else raw
        _check(
            "implementation_preference",
            pref in PREFERENCES,
            "one of 'auto', 'native_first', 'dspy_first' (or 'python_first')",
            raw,
        )
        msgspec.structs.force_setattr(self, "implementation_preference", pref)
        for key in ("allow_fallback", "preload_dspy", "gc_freeze"):
            _check(key, isinstance(getattr(self, key), bool), "a bool", getattr(self, key))
        overrides = {
            name: implementation_name(impl, f"module_overrides[{name!r}]")
            for name, impl in _by_module_type(
                "module_overrides", self.module_overrides, "implementation"
            ).items()
        }
        msgspec.structs.force_setattr(self, "module_overrides", overrides)
        _check(
            "adapter",
            self.adapter in ADAPTERS,
            "one of " + ", ".join(map(repr, ADAPTERS)),
            self.adapter,
        )
        for key in (
            "mailbox_size",
            "max_concurrency",
            "max_restarts",
            "max_connections",
            "sync_threads",
        ):
            value = getattr(self, key)
            _check(key, _integer(value) and value >= 1, "an int >= 1", value)
        workers = self.dspy_workers
        _check(
            "dspy_workers",
            isinstance(workers, RayWorkers) or (_integer(workers) and workers >= 0),
            "an int >= 0 or a RayWorkers",
            workers,
        )
        _check(
            "call_timeout",
            self.call_timeout is None or is_positive_number(self.call_timeout),
            "None or seconds > 0",
            self.call_timeout,
        )
        _check("max_seconds", is_positive_number(self.max_seconds), "seconds > 0", self.max_seconds)
        _check("overload", self.overload in ("raise", "wait"), "'raise' or 'wait'", self.overload)
        _check(
            "drain_timeout",
            _number(self.drain_timeout) and self.drain_timeout >= 0,
            "seconds >= 0",
            self.drain_timeout,
        )
        tables: tuple[tuple[str, type[Rollout] | type[Shadow] | type[Budget]], ...] = (
            ("rollout", Rollout),
            ("shadow", Shadow),
            ("budgets", Budget),
        )
        for key, kind in tables:
            built: dict[str, Any] = {}
            for name, value in _by_module_type(key, getattr(self, key), "settings").items():
                if isinstance(value, kind):
                    built[name] = value
                elif isinstance(value, Mapping):
                    built[name] = _build(kind, value, f"{key}.{name}")
                else:
                    raise ConfigError(f"{key}[{name!r}] must be a {kind.__name__} or a dict")
            msgspec.structs.force_setattr(self, key, built)
        if isinstance(self.budget, Mapping):  # Config(budget={"max_tokens": 1000})
            msgspec.structs.force_setattr(self, "budget", _build(Budget, self.budget, "budget"))
        _check(
            "budget",
            self.budget is None or isinstance(self.budget, Budget),
            "None or a Budget",
            self.budget,
        )
        for nested, nested_kind in _NESTED.items():
            value = getattr(self, nested)
            if isinstance(value, Mapping):  # Config(adaptive={"explore_rate": 0.1})
                value = _build(nested_kind, value, nested)
                msgspec.structs.force_setattr(self, nested, value)
            _check(
                nested, isinstance(value, nested_kind), f"a {nested_kind.__name__} or a dict", value
            )

    def replace(self, **changes: Any) -> Config:
        """A validated copy with ``changes`` applied; nested keys as ``adaptive={...}``.

        Raises ConfigError as ``Config(...)`` does."""
        for nested in _NESTED:
            value = changes.get(nested)
            if isinstance(value, Mapping):
                current = getattr(self, nested)
                merged = {**msgspec.structs.asdict(current), **value}
                changes[nested] = _build(type(current), merged, nested)
        config: Config = _build(Config, {**msgspec.structs.asdict(self), **changes}, "")
        return config

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read ``DSPEX_<KEY>`` variables (nested: ``DSPEX_CIRCUIT_COOLDOWN``), then apply
        ``overrides``. ``DSPEX_MODULE_OVERRIDES`` reads ``"ReAct=dspy,Predict=native"``,
        ``DSPEX_ROLLOUT``, ``DSPEX_SHADOW``, ``DSPEX_BUDGET`` and ``DSPEX_BUDGETS`` a JSON
        object.

        Logs a warning (logger ``dspex.config``) for each ``DSPEX_*`` variable dspex does not
        read, with the closest valid name. Raises ConfigError for a bad value."""
        env = os.environ if environ is None else environ
        _warn_unknown_variables(env)
        values: dict[str, Any] = {}
        for variable, (key, sub) in VARIABLES.items():
            raw = env.get(variable)
            if raw is None:
                continue
            if sub:
                values.setdefault(key, {})[sub] = raw
            elif key == "module_overrides":
                values[key] = _parse_overrides(raw)
            elif key in ("rollout", "shadow", "budgets", "budget"):  # JSON objects
                try:
                    values[key] = msgspec.json.decode(raw)
                except msgspec.DecodeError as exc:
                    raise ConfigError(f"{variable} must be a JSON object: {exc}") from None
            else:
                values[key] = raw
        for key, kind in _NESTED.items():
            if key in values:
                values[key] = _build(kind, values[key], key, from_text=True)
        config: Config = _build(cls, values, "", from_text=True)
        return config.replace(**overrides) if overrides else config


#: The settings a runtime reads once, as it starts: ``Runtime.configure`` refuses to change them.
START_KEYS = (
    "dspy_workers",
    "workers",
    "preload_dspy",
    "max_connections",
    "sync_threads",
    "cache",
)


_NESTED: dict[
    str, type[AdaptiveConfig] | type[CircuitConfig] | type[WorkerConfig] | type[CacheConfig]
] = {
    "adaptive": AdaptiveConfig,
    "circuit": CircuitConfig,
    "workers": WorkerConfig,
    "cache": CacheConfig,
}


#: Each ``DSPEX_*`` variable Config reads -> (key, nested key or "").
VARIABLES: dict[str, tuple[str, str]] = {
    f"DSPEX_{key}_{sub}".rstrip("_").upper(): (key, sub)
    for key in Config.__struct_fields__
    for sub in (_NESTED[key].__struct_fields__ if key in _NESTED else ("",))
}


def _warn_unknown_variables(env: Mapping[str, str]) -> None:
    """A logging warning per ``DSPEX_*`` variable dspex does not read: a deployment's typo,
    which would otherwise leave a setting at its default without a word."""
    known = [*VARIABLES, *OTHER_VARIABLES]
    for name in sorted(env):
        if name.upper().startswith("DSPEX_") and name not in known:
            hint = (
                _did_you_mean(name, known, prefix="DSPEX_") or f"; dspex reads {', '.join(known)}"
            )
            log.warning("ignoring unknown environment variable %s%s", name, hint)


def _by_module_type(key: str, table: object, what: str) -> dict[str, Any]:
    """``table`` (module type -> ``what``) keyed by canonical module type names; ConfigError
    if it is no mapping or names a module type unknown or twice."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{key} must be a mapping of module type to {what}, got {table!r}")
    out: dict[str, Any] = {}
    spelled: dict[str, object] = {}
    for raw, value in table.items():
        name = module_type_name(raw, f"{key}[{raw!r}]")
        if name in out:
            raise ConfigError(f"{key} names {name} twice: as {spelled[name]!r} and {raw!r}")
        out[name], spelled[name] = value, raw
    return out


def _parse_overrides(raw: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, impl = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(
                f"DSPEX_MODULE_OVERRIDES must look like 'ReAct=dspy,Predict=native', got {raw!r}"
            )
        out[name.strip()] = impl.strip()
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _from_text(key: str, raw: str, kind: Any) -> Any:
    """Turn an environment string into the field's type; validation is __post_init__'s job."""
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ConfigError(f"{key} must be true or false, got {raw!r}")
    if kind in (int, float, float | None, int | RayWorkers):
        if kind == float | None and text.lower() in ("", "none"):
            return None
        try:
            return float(text) if float in getattr(kind, "__args__", (kind,)) else int(text)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    return text


def _build(kind: type[Any], values: Mapping[str, Any], prefix: str, from_text: bool = False) -> Any:
    """Build ``kind`` from ``values`` (strings when ``from_text``); every check raises
    ConfigError through the struct's ``__post_init__``."""
    fields = {f.name: f.type for f in msgspec.structs.fields(kind)}
    _check_keys(values, tuple(fields), prefix)
    kwargs = {
        key: _from_text(f"{prefix}.{key}" if prefix else key, value, fields[key])
        if from_text and isinstance(value, str)
        else value
        for key, value in values.items()
    }
    return kind(**kwargs)
