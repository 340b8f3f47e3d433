"""Config: how the router picks implementations, when it falls back, and the runtime's limits.

Build it from keywords (``Config(implementation_preference="native_first")``), from ``DSPEX_*``
environment variables (``Config.from_env()``), or change it at run time through the router
(``await runtime.configure(...)``). Invalid values raise ``ConfigError`` naming the key and the
allowed values. ``"python"`` is accepted wherever ``"dspy"`` is, and ``"python_first"`` for
``"dspy_first"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from dspex.actors._messages import Overflow
from dspex.errors import ConfigError

Implementation = Literal["native", "dspy"]
Preference = Literal["auto", "native_first", "dspy_first"]
AdapterName = Literal["chat", "json"]

IMPLEMENTATIONS: tuple[Implementation, ...] = ("native", "dspy")
PREFERENCES: tuple[Preference, ...] = ("auto", "native_first", "dspy_first")
ADAPTERS: tuple[AdapterName, ...] = ("chat", "json")
_ALIASES = {"python": "dspy", "python_first": "dspy_first"}


def implementation_name(value: object, key: str = "implementation") -> Implementation:
    """Normalize an implementation name (``"python"`` -> ``"dspy"``) or raise ConfigError."""
    name = _ALIASES.get(value, value) if isinstance(value, str) else value
    if name not in IMPLEMENTATIONS:
        raise ConfigError(f"{key} must be one of 'native', 'dspy' (or 'python'), got {value!r}")
    return name


def _check(key: str, ok: bool, allowed: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


class AdaptiveConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The adaptive policy (``implementation_preference="auto"``).

    Per module type and implementation it keeps an EWMA of latency (weight ``alpha``) and of
    success. Once both have ``min_samples`` calls, it routes to the one with the better success
    rate when they differ by more than ``success_margin``, else to the faster one; a fraction
    ``explore_rate`` of calls goes to the other so its figures stay fresh.
    """

    alpha: float = 0.2
    explore_rate: float = 0.05
    min_samples: int = 10
    success_margin: float = 0.05

    def __post_init__(self) -> None:
        _check("adaptive.alpha", 0 < self.alpha <= 1, "in (0, 1]", self.alpha)
        _check("adaptive.explore_rate", 0 <= self.explore_rate <= 1, "in [0, 1]", self.explore_rate)
        _check("adaptive.min_samples", self.min_samples >= 1, "an int >= 1", self.min_samples)
        _check(
            "adaptive.success_margin",
            0 <= self.success_margin <= 1,
            "in [0, 1]",
            self.success_margin,
        )


class CircuitConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The native circuit breaker per module type.

    After ``crash_threshold`` native crashes of one module actor within ``window`` seconds the
    actor is restarted to serve on dspy and the circuit of its module type opens: no call of that
    type is routed to native until ``cooldown`` seconds later, when one probe call tries native;
    its success closes the circuit, its failure opens it again.
    """

    crash_threshold: int = 3
    window: float = 60.0
    cooldown: float = 30.0

    def __post_init__(self) -> None:
        _check(
            "circuit.crash_threshold",
            isinstance(self.crash_threshold, int) and self.crash_threshold >= 1,
            "an int >= 1",
            self.crash_threshold,
        )
        _check("circuit.window", _positive(self.window), "> 0", self.window)
        _check("circuit.cooldown", _positive(self.cooldown), "> 0", self.cooldown)


class Rollout(msgspec.Struct, frozen=True, kw_only=True):
    """A canary rollout of native for one module type.

    ``native_percent`` of calls go to native, the rest to dspy; a call with a request key always
    lands on the same side (a user's session stays on one implementation). Once both sides have
    ``min_calls``, the router rolls native back to 0% when its error rate exceeds dspy's by more
    than ``max_error_rate_increase``, or its latency exceeds dspy's times ``max_latency_ratio``.
    """

    native_percent: float = 0.0
    max_error_rate_increase: float = 0.05
    max_latency_ratio: float | None = None
    min_calls: int = 20

    def __post_init__(self) -> None:
        _check(
            "rollout.native_percent",
            isinstance(self.native_percent, (int, float)) and 0 <= self.native_percent <= 100,
            "a percentage in [0, 100]",
            self.native_percent,
        )
        _check(
            "rollout.max_error_rate_increase",
            0 <= self.max_error_rate_increase <= 1,
            "in [0, 1]",
            self.max_error_rate_increase,
        )
        _check(
            "rollout.max_latency_ratio",
            self.max_latency_ratio is None or _positive(self.max_latency_ratio),
            "None or > 0",
            self.max_latency_ratio,
        )
        _check("rollout.min_calls", self.min_calls >= 1, "an int >= 1", self.min_calls)


class Shadow(msgspec.Struct, frozen=True, kw_only=True):
    """Shadow comparison for one module type: a ``rate`` of calls also run on the other
    implementation in the background (never delaying or failing the caller), their outputs
    compared field by field. At most ``max_in_flight`` shadow calls run per module at once and
    the router keeps the last ``max_divergences`` divergences."""

    rate: float = 0.1
    max_in_flight: int = 8
    max_divergences: int = 100

    def __post_init__(self) -> None:
        _check("shadow.rate", 0 <= self.rate <= 1, "in [0, 1]", self.rate)
        _check("shadow.max_in_flight", self.max_in_flight >= 1, "an int >= 1", self.max_in_flight)
        _check(
            "shadow.max_divergences", self.max_divergences >= 0, "an int >= 0", self.max_divergences
        )


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """Routing, fallback and limits of a runtime.

    - ``implementation_preference``: ``auto`` (adaptive), ``native_first`` or ``dspy_first``.
    - ``allow_fallback``: re-run a call on dspy when native fails with an LM or parse error.
    - ``module_overrides``: module type -> implementation, e.g. ``{"ReAct": "dspy"}``.
    - ``adapter``: ``chat`` (with DSPy's JSON fallback) or ``json``, for modules that set none.
    - ``mailbox_size`` and ``max_concurrency`` per module actor: at most ``max_concurrency``
      calls run at once and ``mailbox_size`` more wait; beyond that ``overload="raise"`` fails a
      call at once with ``Overloaded`` and ``"wait"`` lets it wait for room up to its deadline.
    - ``call_timeout``: the default deadline of a call in seconds (None: none); at the deadline
      the call's work, its LM request included, is cancelled and the caller gets ``Timeout``.
    - ``drain_timeout``: how long shutdown lets calls in flight finish before cancelling them.
    - ``max_connections``: the native LM client's connection pool, per runtime.
    - ``max_restarts`` in ``max_seconds``: the restart intensity of the module supervisor.
    - ``preload_dspy``: import DSPy and LiteLLM while the runtime starts (about 3 s, off the
      event loop) rather than with the first dspy module or fallback, whose call would wait
      for it, maybe past its deadline.
    - ``gc_freeze``: once DSPy and LiteLLM are imported, collect and then ``gc.freeze()`` every
      object alive, so that full garbage collections skip those ~400,000 objects instead of
      pausing the event loop ~0.2 s each. Process-wide.
    - ``rollout``: module type -> :class:`Rollout` (canary percentage of native, with rollback).
    - ``shadow``: module type -> :class:`Shadow` (run the other implementation too, compare).
    """

    implementation_preference: Preference = "auto"
    allow_fallback: bool = True
    module_overrides: dict[str, Implementation] = {}
    adapter: AdapterName = "chat"
    adaptive: AdaptiveConfig = AdaptiveConfig()
    circuit: CircuitConfig = CircuitConfig()
    mailbox_size: int = 1024
    max_concurrency: int = 256
    call_timeout: float | None = None
    overload: Overflow = "raise"
    drain_timeout: float = 10.0
    max_connections: int = 100
    max_restarts: int = 100
    max_seconds: float = 5.0
    preload_dspy: bool = False
    gc_freeze: bool = True
    rollout: dict[str, Rollout] = {}
    shadow: dict[str, Shadow] = {}

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
        _check(
            "module_overrides",
            isinstance(self.module_overrides, Mapping),
            "a mapping of module type to implementation",
            self.module_overrides,
        )
        overrides = {
            str(k): implementation_name(v, f"module_overrides[{k!r}]")
            for k, v in self.module_overrides.items()
        }
        msgspec.structs.force_setattr(self, "module_overrides", overrides)
        _check("adapter", self.adapter in ADAPTERS, "one of 'chat', 'json'", self.adapter)
        for key in ("mailbox_size", "max_concurrency", "max_restarts", "max_connections"):
            value = getattr(self, key)
            _check(
                key,
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                "an int >= 1",
                value,
            )
        _check(
            "call_timeout",
            self.call_timeout is None or _positive(self.call_timeout),
            "None or seconds > 0",
            self.call_timeout,
        )
        _check("max_seconds", _positive(self.max_seconds), "seconds > 0", self.max_seconds)
        _check("overload", self.overload in ("raise", "wait"), "'raise' or 'wait'", self.overload)
        _check(
            "drain_timeout",
            isinstance(self.drain_timeout, (int, float)) and self.drain_timeout >= 0,
            "seconds >= 0",
            self.drain_timeout,
        )
        tables: tuple[tuple[str, type[Rollout] | type[Shadow]], ...] = (
            ("rollout", Rollout),
            ("shadow", Shadow),
        )
        for key, kind in tables:
            table = getattr(self, key)
            _check(key, isinstance(table, Mapping), "a mapping of module type to settings", table)
            built: dict[str, Any] = {}
            for name, value in table.items():
                if isinstance(value, kind):
                    built[str(name)] = value
                elif isinstance(value, Mapping):
                    built[str(name)] = _build(kind, value, f"{key}.{name}")
                else:
                    raise ConfigError(f"{key}[{name!r}] must be a {kind.__name__} or a dict")
            msgspec.structs.force_setattr(self, key, built)
        nested_types: tuple[tuple[str, type[AdaptiveConfig] | type[CircuitConfig]], ...] = (
            ("adaptive", AdaptiveConfig),
            ("circuit", CircuitConfig),
        )
        for nested, nested_kind in nested_types:
            value = getattr(self, nested)
            if isinstance(value, Mapping):  # Config(adaptive={"explore_rate": 0.1})
                value = _build(nested_kind, value, nested)
                msgspec.structs.force_setattr(self, nested, value)
            _check(
                nested, isinstance(value, nested_kind), f"a {nested_kind.__name__} or a dict", value
            )

    def replace(self, **changes: Any) -> Config:
        """A validated copy with ``changes`` applied; nested keys as ``adaptive={...}``."""
        unknown = set(changes) - set(self.__struct_fields__)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {sorted(unknown)}; known: {list(self.__struct_fields__)}"
            )
        for nested in ("adaptive", "circuit"):
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
        ``overrides``. ``DSPEX_MODULE_OVERRIDES`` reads ``"ReAct=dspy,Predict=native"``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for key in cls.__struct_fields__:
            if key in ("adaptive", "circuit"):
                kind = AdaptiveConfig if key == "adaptive" else CircuitConfig
                nested = {
                    sub: env[f"DSPEX_{key.upper()}_{sub.upper()}"]
                    for sub in kind.__struct_fields__
                    if f"DSPEX_{key.upper()}_{sub.upper()}" in env
                }
                if nested:
                    values[key] = _build(kind, nested, key, from_text=True)
            elif f"DSPEX_{key.upper()}" in env:
                raw = env[f"DSPEX_{key.upper()}"]
                if key == "module_overrides":
                    values[key] = _parse_overrides(raw)
                elif key in ("rollout", "shadow"):  # JSON: {"Predict": {"native_percent": 10}}
                    try:
                        values[key] = msgspec.json.decode(raw)
                    except msgspec.DecodeError as exc:
                        raise ConfigError(
                            f"DSPEX_{key.upper()} must be a JSON object: {exc}"
                        ) from None
                else:
                    values[key] = raw
        config: Config = _build(cls, values, "", from_text=True)
        return config.replace(**overrides) if overrides else config


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
    if kind in (int, float, float | None):
        if kind == float | None and text.lower() in ("", "none"):
            return None
        try:
            return int(text) if kind is int else float(text)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    return text


def _build(kind: type[Any], values: Mapping[str, Any], prefix: str, from_text: bool = False) -> Any:
    """Build ``kind`` from ``values`` (strings when ``from_text``); every check raises
    ConfigError through the struct's ``__post_init__``."""
    fields = {f.name: f.type for f in msgspec.structs.fields(kind)}
    kwargs = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise ConfigError(f"unknown config key {name!r}; known: {list(fields)}")
        kwargs[key] = (
            _from_text(name, value, fields[key]) if from_text and isinstance(value, str) else value
        )
    return kind(**kwargs)
