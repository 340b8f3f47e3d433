"""RouterActor: owns the registry, the configuration, live metrics and the native circuits."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import msgspec

from dspex import telemetry
from dspex.actors import Actor, Caller
from dspex.config import Config, Implementation
from dspex.routing._policy import Circuit, RoutingSnapshot
from dspex.routing._registry import Registry

log = logging.getLogger("dspex.routing")

_SAMPLES = 2048  # latency samples kept per module type and implementation, for percentiles


class Outcome(msgspec.Struct, frozen=True, array_like=True):
    """One attempt of one call on one implementation, cast to the router by module actors."""

    module_type: str
    implementation: str
    duration: float
    ok: bool
    fell_back: bool = False
    probe: bool = False


class NativeCrashed(msgspec.Struct, frozen=True):
    """A module actor of ``module_type`` crashed in native code and was restarted."""

    module_type: str


class OpenCircuit(msgspec.Struct, frozen=True):
    """Stop routing ``module_type`` to native (a module actor fell back after K crashes)."""

    module_type: str
    reason: str


class Configure(msgspec.Struct, frozen=True):
    """Apply config changes at run time (feature flags)."""

    changes: dict[str, Any]


class GetMetrics(msgspec.Struct, frozen=True):
    """Request the metrics report."""


class ImplementationMetrics(msgspec.Struct, frozen=True):
    """Live figures of one implementation of one module type."""

    calls: int
    successes: int
    failures: int
    fallbacks: int
    restarts: int
    success_rate: float
    latency_ewma_ms: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float


class MetricsReport(msgspec.Struct, frozen=True):
    """``modules[module_type][implementation]`` figures, and the state of each native circuit."""

    modules: dict[str, dict[str, ImplementationMetrics]]
    circuits: dict[str, str]


class _Stats:
    __slots__ = (
        "calls",
        "ewma_latency",
        "ewma_success",
        "failures",
        "fallbacks",
        "restarts",
        "samples",
        "successes",
    )

    def __init__(self) -> None:
        self.calls = self.successes = self.failures = self.fallbacks = self.restarts = 0
        self.ewma_latency = 0.0
        self.ewma_success = 1.0
        self.samples: deque[float] = deque(maxlen=_SAMPLES)

    def record(self, o: Outcome, alpha: float) -> None:
        first = self.calls == 0
        self.calls += 1
        if o.ok:
            self.successes += 1
        else:
            self.failures += 1
        if o.fell_back:
            self.fallbacks += 1
        self.samples.append(o.duration)
        ok = 1.0 if o.ok else 0.0
        self.ewma_latency = (
            o.duration if first else self.ewma_latency + alpha * (o.duration - self.ewma_latency)
        )
        self.ewma_success = ok if first else self.ewma_success + alpha * (ok - self.ewma_success)

    def report(self) -> ImplementationMetrics:
        ordered = sorted(self.samples)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

        return ImplementationMetrics(
            calls=self.calls,
            successes=self.successes,
            failures=self.failures,
            fallbacks=self.fallbacks,
            restarts=self.restarts,
            success_rate=self.successes / self.calls if self.calls else 1.0,
            latency_ewma_ms=self.ewma_latency * 1000,
            latency_p50_ms=pct(0.50),
            latency_p90_ms=pct(0.90),
            latency_p99_ms=pct(0.99),
        )


class SnapshotCell:
    """Where the router publishes the current :class:`RoutingSnapshot` for direct reads."""

    __slots__ = ("snapshot",)

    def __init__(self, snapshot: RoutingSnapshot):
        self.snapshot = snapshot


class RouterActor(Actor):
    """Holds the registry, configuration, metrics and circuits; publishes routing snapshots.

    Module actors never wait on it: they read ``cell.snapshot`` and cast :class:`Outcome`.
    """

    mailbox_size = 1 << 20  # outcomes from every module actor arrive here

    async def init(self, *args: Any) -> None:
        registry, config, cell = args
        if cell.snapshot.version > 0:  # a restart: keep the flags set at run time
            config = cell.snapshot.config
        registry.validate(config)
        self.registry: Registry = registry
        self.config: Config = config
        self.cell: SnapshotCell = cell
        self.stats: dict[tuple[str, str], _Stats] = {}
        self.adaptive: dict[str, Implementation] = {}
        self.circuits: dict[str, Circuit] = {}
        self._publish()

    def _publish(self) -> None:
        old = self.cell.snapshot
        self.cell.snapshot = RoutingSnapshot(
            old.version + 1, self.config, self.registry, dict(self.adaptive), dict(self.circuits)
        )

    def _stats(self, module_type: str, impl: str) -> _Stats:
        key = (module_type, impl)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = _Stats()
        return stats

    # -- outcomes and circuits ------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        if isinstance(msg, Outcome):
            self._stats(msg.module_type, msg.implementation).record(msg, self.config.adaptive.alpha)
            if msg.probe:
                self._probe_result(msg.module_type, msg.ok)
            self._update_leader(msg.module_type)
        elif isinstance(msg, NativeCrashed):
            self._stats(msg.module_type, "native").restarts += 1
            telemetry.restarts.add(1, {telemetry.OPERATION: msg.module_type})
            span = telemetry.tracer.start_span(
                "dspex.restart", attributes={telemetry.OPERATION: msg.module_type}
            )
            span.end()
            circuit = self.circuits.get(msg.module_type)
            if circuit is not None and circuit.probing:  # a crashing probe reopens it
                self._open(msg.module_type, "probe_crashed")
        elif isinstance(msg, OpenCircuit):
            if self.config.allow_fallback:  # without fallback, native stays native
                self._open(msg.module_type, msg.reason)
        else:
            await super().handle_cast(msg)

    def _update_leader(self, module_type: str) -> None:
        n = self.stats.get((module_type, "native"))
        d = self.stats.get((module_type, "dspy"))
        adaptive = self.config.adaptive
        leader: Implementation = "native"
        if n is not None and d is not None and min(n.calls, d.calls) >= adaptive.min_samples:
            if abs(n.ewma_success - d.ewma_success) > adaptive.success_margin:
                leader = "native" if n.ewma_success > d.ewma_success else "dspy"
            else:
                leader = "native" if n.ewma_latency <= d.ewma_latency else "dspy"
        if self.adaptive.get(module_type, "native") != leader:
            self.adaptive[module_type] = leader
            log.info("adaptive routing: %s now prefers %s", module_type, leader)
            self._publish()

    def _open(self, module_type: str, reason: str) -> None:
        now = self.runtime.loop.time()
        cooldown = self.config.circuit.cooldown
        self.circuits[module_type] = Circuit(now, now + cooldown)
        self._circuit_event(module_type, "open", reason)
        self._publish()

    def _probe_result(self, module_type: str, ok: bool) -> None:
        if module_type not in self.circuits:
            return
        if ok:
            del self.circuits[module_type]
            self._circuit_event(module_type, "closed", "probe_succeeded")
            self._publish()
        else:
            self._open(module_type, "probe_failed")

    def _circuit_event(self, module_type: str, state: str, reason: str) -> None:
        log.warning("native circuit of %s is %s (%s)", module_type, state, reason)
        with telemetry.tracer.start_as_current_span("dspex.circuit") as span:
            span.set_attribute(telemetry.OPERATION, module_type)
            span.set_attribute(telemetry.CIRCUIT_STATE, state)
            span.add_event(f"circuit_{state}", {"reason": reason})

    # -- requests -------------------------------------------------------------------------------

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if isinstance(msg, Configure):
            try:
                config = self.config.replace(**msg.changes)
                self.registry.validate(config)
            except Exception as exc:  # a bad flag is the caller's error, never a router crash
                caller.fail(exc)
                return None
            self.config = config
            with telemetry.tracer.start_as_current_span("dspex.configure") as span:
                for key, value in msg.changes.items():
                    span.set_attribute(f"dspex.config.{key}", str(value))
            self._publish()
            return config
        if isinstance(msg, GetMetrics):
            now = self.runtime.loop.time()
            modules: dict[str, dict[str, ImplementationMetrics]] = {}
            for (module_type, impl), stats in self.stats.items():
                modules.setdefault(module_type, {})[impl] = stats.report()
            circuits: dict[str, str] = {t: c.state(now) for t, c in self.circuits.items()}
            return MetricsReport(modules=modules, circuits=circuits)
        return await super().handle_call(msg, caller)
