"""RouterActor: owns the registry, the configuration, live metrics and the native circuits."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import msgspec

from dspex import telemetry
from dspex._budget import Spent, Use
from dspex._threads import ThreadStats
from dspex.actors import Actor, Caller
from dspex.cache import CacheReport
from dspex.config import START_KEYS, Budget, Config, Implementation
from dspex.errors import ConfigError
from dspex.routing._policy import Circuit, RoutingSnapshot
from dspex.routing._registry import Registry

log = logging.getLogger("dspex.routing")

_SAMPLES = 2048  # latency samples kept per module type and implementation, for percentiles


class Outcome(msgspec.Struct, frozen=True, array_like=True):
    """One attempt of one call on one implementation, cast to the router by module actors.

    ``module_type`` is the name the module reports under (its type, or a name such as a
    program's predictor's ``qa.draft.predict``): its metrics, circuit and adaptive leader.
    ``kind`` is its module type when that name is another (None: ``module_type`` is the type):
    what a rollout is set for, so every module of the type feeds the rollout's rollback. The
    tokens and ``cost`` (US dollars; None: not priced) are those the attempt used, as far as
    known; ``stopped``: a budget stopped it, which is neither a success nor a failure of the
    implementation."""

    module_type: str
    implementation: str
    duration: float
    ok: bool
    fell_back: bool = False
    probe: bool = False
    kind: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    stopped: bool = False


class NativeCrashed(msgspec.Struct, frozen=True):
    """A call of ``module_type`` raised an unexpected exception (``error``, its repr) in native
    code, cast by the module actor, which survived it. ``circuit.crash_threshold`` of these
    within ``circuit.window`` seconds open the type's native circuit."""

    module_type: str
    error: str


class ModuleRestarted(msgspec.Struct, frozen=True):
    """A module actor of ``module_type`` crashed (its own state broke) and was restarted."""

    module_type: str


class ClaimProbe(msgspec.Struct, frozen=True):
    """Ask whether this call may run on native while ``module_type``'s circuit is half-open:
    True for one call (the probe; also True when the circuit closed meanwhile)."""

    module_type: str


class ProbeAbandoned(msgspec.Struct, frozen=True):
    """A call that claimed the probe of ``module_type`` was cancelled before it could know
    whether it got it: a probe granted to it will never report, so the circuit opens again."""

    module_type: str


class Configure(msgspec.Struct, frozen=True):
    """Apply config changes at run time (feature flags)."""

    changes: dict[str, Any]


class GetMetrics(msgspec.Struct, frozen=True):
    """Request the metrics report."""


class ShadowResult(msgspec.Struct, frozen=True):
    """One shadow comparison: the caller's answer (``primary``) beside the other
    implementation's (``shadow``), compared field by field; outputs already redacted."""

    module_type: str
    primary: str
    fields: dict[str, bool]
    primary_ms: float
    shadow_ms: float
    inputs: dict[str, Any]
    primary_output: dict[str, Any]
    shadow_output: dict[str, Any] | None
    shadow_error: str | None = None

    @property
    def agreed(self) -> bool:
        """Whether the shadow answered and every field matched."""
        return self.shadow_error is None and all(self.fields.values())


class Divergence(msgspec.Struct, frozen=True):
    """A shadow comparison that disagreed: the inputs and both outputs (or the error)."""

    inputs: dict[str, Any]
    primary: str
    primary_output: dict[str, Any]
    shadow_output: dict[str, Any] | None
    shadow_error: str | None
    fields: list[str]


class ShadowReport(msgspec.Struct, frozen=True):
    """Shadow comparisons of one module type."""

    calls: int
    agreement_rate: float
    field_agreement: dict[str, float]
    primary_p50_ms: float
    shadow_p50_ms: float
    errors: int
    divergences: list[Divergence]


class ImplementationMetrics(msgspec.Struct, frozen=True):
    """Live figures of one implementation of one module type."""

    calls: int
    successes: int
    failures: int
    fallbacks: int
    crashes: int
    success_rate: float
    latency_ewma_ms: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None


class UsageReport(msgspec.Struct, frozen=True):
    """Tokens the LM calls of a runtime used, and what they cost in US dollars (from LiteLLM's
    price map; None while no call was priced, ``unpriced_calls`` counts those that were not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    unpriced_calls: int = 0


class BudgetReport(msgspec.Struct, frozen=True):
    """A budget in force (its limits) and what its scope has used; ``spent``: calls of the
    scope now raise BudgetExceeded."""

    max_tokens: int | None
    max_cost: float | None
    tokens: int
    cost: float
    spent: bool


class MetricsReport(msgspec.Struct, frozen=True):
    """What ``await runtime.metrics()`` returns: ``modules[module_type][implementation]``
    figures (a wrapped program's under its ``name``; ``crashes`` counts the calls whose native
    code raised an unexpected exception), the state of each native circuit that is not closed
    (``"open"`` or ``"half_open"``), how many times module actors of each type were restarted
    after crashing (``restarts``; types with none are left out), the canary rollouts rolled
    back (module type -> why), the shadow comparisons per module type, the threads for sync
    user code (``Config.sync_threads``: busy, waiting), and the runtime's LM ``usage`` and
    cost (each module's are in its figures: ``prompt_tokens``, ``completion_tokens``,
    ``cost``; a wrapped program's are its predictors', counted once in the runtime's), and
    the budgets in force (``"runtime"`` and module types) with what each scope has used, and
    the response cache's hits, misses and size (``cache``; None when it is off)."""

    modules: dict[str, dict[str, ImplementationMetrics]]
    circuits: dict[str, str]
    restarts: dict[str, int] = {}
    rollbacks: dict[str, str] = {}
    shadow: dict[str, ShadowReport] = {}
    threads: ThreadStats | None = None
    usage: UsageReport = UsageReport()
    budgets: dict[str, BudgetReport] = {}
    cache: CacheReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data that ``json.dumps`` accepts (e.g. to return from a web
        endpoint), shaped as the Structs are: ``{"modules": {"Predict": {"native": {"calls":
        3, "successes": 3, ..., "latency_p99_ms": 1.2}}}, "circuits": {...}, "rollbacks":
        {...}, "shadow": {"Predict": {"calls": ..., "divergences": [{...}]}}}``. A value JSON
        cannot hold (a shadow divergence's input or output, e.g. an image) becomes its str()."""
        plain: dict[str, Any] = msgspec.to_builtins(self, enc_hook=str)
        return plain


class _Stats:
    __slots__ = (
        "calls",
        "completion_tokens",
        "cost",
        "crashes",
        "ewma_latency",
        "ewma_success",
        "failures",
        "fallbacks",
        "priced",
        "prompt_tokens",
        "samples",
        "successes",
    )

    def __init__(self) -> None:
        self.calls = self.successes = self.failures = self.fallbacks = self.crashes = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.cost = 0.0
        self.priced = False  # some call's cost was known
        self.ewma_latency = 0.0
        self.ewma_success = 1.0
        self.samples: deque[float] = deque(maxlen=_SAMPLES)

    def record(self, o: Outcome, alpha: float) -> None:
        self.prompt_tokens += o.prompt_tokens
        self.completion_tokens += o.completion_tokens
        if o.cost is not None:
            self.cost += o.cost
            self.priced = True
        if o.stopped:  # a budget ended it: its use counts, not its outcome
            return
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
            crashes=self.crashes,
            success_rate=self.successes / self.calls if self.calls else 1.0,
            latency_ewma_ms=self.ewma_latency * 1000,
            latency_p50_ms=pct(0.50),
            latency_p90_ms=pct(0.90),
            latency_p99_ms=pct(0.99),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=self.cost if self.priced else None,
        )


class _ShadowStats:
    __slots__ = ("agreed", "calls", "divergences", "errors", "fields", "primary_ms", "shadow_ms")

    def __init__(self, keep: int) -> None:
        self.calls = self.agreed = self.errors = 0
        self.fields: dict[str, list[int]] = {}
        self.primary_ms: deque[float] = deque(maxlen=_SAMPLES)
        self.shadow_ms: deque[float] = deque(maxlen=_SAMPLES)
        self.divergences: deque[Divergence] = deque(maxlen=keep)

    def record(self, r: ShadowResult) -> None:
        self.calls += 1
        self.agreed += r.agreed
        self.errors += r.shadow_error is not None
        for name, same in r.fields.items():
            counts = self.fields.setdefault(name, [0, 0])
            counts[0] += same
            counts[1] += 1
        self.primary_ms.append(r.primary_ms)
        self.shadow_ms.append(r.shadow_ms)
        if not r.agreed and self.divergences.maxlen:
            different = [name for name, same in r.fields.items() if not same]
            self.divergences.append(
                Divergence(
                    r.inputs,
                    r.primary,
                    r.primary_output,
                    r.shadow_output,
                    r.shadow_error,
                    different,
                )
            )

    def report(self) -> ShadowReport:
        def p50(samples: deque[float]) -> float:
            return sorted(samples)[len(samples) // 2] if samples else 0.0

        return ShadowReport(
            calls=self.calls,
            agreement_rate=self.agreed / self.calls if self.calls else 1.0,
            field_agreement={k: same / total for k, (same, total) in self.fields.items()},
            primary_p50_ms=p50(self.primary_ms),
            shadow_p50_ms=p50(self.shadow_ms),
            errors=self.errors,
            divergences=list(self.divergences),
        )


class SnapshotCell:
    """Where the router publishes the current :class:`RoutingSnapshot` for direct reads, its
    last :class:`MetricsReport` when it stops (``final``), and the LM use it counts per budget
    scope (``spent``)."""

    __slots__ = ("final", "snapshot", "spent")

    def __init__(self, snapshot: RoutingSnapshot):
        self.snapshot = snapshot
        self.final: MetricsReport | None = None
        # LM use per budget scope: the router writes it, module actors read it as calls start
        self.spent = Spent()


class RouterActor(Actor):
    """Holds the registry, configuration, metrics and circuits; publishes routing snapshots.

    Module actors never wait on it: they read ``cell.snapshot`` and cast :class:`Outcome` and
    :class:`NativeCrashed`; only a call that may probe a half-open circuit asks it
    (:class:`ClaimProbe`). The router alone opens, half-opens and closes circuits, from the
    crashes and probe outcomes it is told of.
    """

    mailbox_size = 1 << 20  # outcomes from every module actor arrive here
    trap_exit = True  # stopped after the outcomes already queued: the final metrics hold them

    async def init(self, *args: Any) -> None:
        registry, config, cell = args
        if cell.snapshot.version > 0:  # a restart: keep the flags set at run time
            config = cell.snapshot.config
        registry.validate(config)
        self.registry: Registry = registry
        self.config: Config = config
        self.cell: SnapshotCell = cell
        self.stats: dict[tuple[str, str], _Stats] = {}
        # per module type and implementation, while a rollout of the type runs: what its
        # rollback weighs (every module of the type, a program's predictors included)
        self.rollout_stats: dict[tuple[str, str], _Stats] = {}
        self.adaptive: dict[str, Implementation] = {}
        self.circuits: dict[str, Circuit] = {}
        self.crashes: dict[str, deque[float]] = {}  # when native crashed, within the window
        self.restarts: dict[str, int] = {}
        self.rollbacks: dict[str, str] = {}
        self.shadows: dict[str, _ShadowStats] = {}
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
            if msg.prompt_tokens or msg.completion_tokens:
                self.cell.spent.add(
                    msg.kind or msg.module_type, msg.prompt_tokens, msg.completion_tokens, msg.cost
                )
            if msg.stopped:  # a budget ended it: no verdict on the implementation
                if msg.probe:
                    self._probe_abandoned(msg.module_type)
                return
            if msg.probe:
                self._probe_result(msg.module_type, msg.ok)
            self._update_leader(msg.module_type)
            kind = msg.kind or msg.module_type
            if kind in self.config.rollout:
                key = (kind, msg.implementation)
                if key not in self.rollout_stats:
                    self.rollout_stats[key] = _Stats()
                self.rollout_stats[key].record(msg, self.config.adaptive.alpha)
                self._check_rollout(kind)
        elif isinstance(msg, ShadowResult):
            stats = self.shadows.get(msg.module_type)
            if stats is None:
                shadow = self.config.shadow.get(msg.module_type)
                keep = shadow.max_divergences if shadow is not None else 100
                stats = self.shadows[msg.module_type] = _ShadowStats(keep)
            stats.record(msg)
        elif isinstance(msg, NativeCrashed):
            self._native_crashed(msg)
        elif isinstance(msg, ProbeAbandoned):
            self._probe_abandoned(msg.module_type)
        elif isinstance(msg, ModuleRestarted):
            self.restarts[msg.module_type] = self.restarts.get(msg.module_type, 0) + 1
            attributes = {telemetry.OPERATION: msg.module_type}
            telemetry.restarts.add(1, attributes)
            telemetry.tracer.start_span("dspex.restart", attributes=attributes).end()
        else:
            await super().handle_cast(msg)

    def _probe_abandoned(self, module_type: str) -> None:
        """The probe granted to a call will not report: open the circuit again."""
        circuit = self.circuits.get(module_type)
        if circuit is not None and circuit.probing:
            self._open(module_type, "probe_abandoned")

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

    def _check_rollout(self, module_type: str) -> None:
        """Roll a canary back to 0% native when native does worse than dspy by the limits."""
        rollout = self.config.rollout.get(module_type)
        n = self.rollout_stats.get((module_type, "native"))
        d = self.rollout_stats.get((module_type, "dspy"))
        if rollout is None or not rollout.native_percent or n is None or d is None:
            return
        if min(n.calls, d.calls) < rollout.min_calls:
            return
        native_errors, dspy_errors = 1 - n.ewma_success, 1 - d.ewma_success
        why = ""
        if native_errors - dspy_errors > rollout.max_error_rate_increase:
            why = f"native error rate {native_errors:.0%} against dspy's {dspy_errors:.0%}"
        elif (
            rollout.max_latency_ratio
            and n.ewma_latency > rollout.max_latency_ratio * d.ewma_latency
        ):
            why = (
                f"native latency {n.ewma_latency * 1000:.1f} ms against dspy's "
                f"{d.ewma_latency * 1000:.1f} ms"
            )
        if not why:
            return
        stopped = msgspec.structs.replace(rollout, native_percent=0.0)
        self.config = self.config.replace(rollout={**self.config.rollout, module_type: stopped})
        self.rollbacks[module_type] = why
        log.warning("canary of native %s rolled back: %s", module_type, why)
        span = telemetry.tracer.start_span(
            "dspex.rollback", attributes={telemetry.OPERATION: module_type, "dspex.reason": why}
        )
        span.end()
        self._publish()

    def _native_crashed(self, msg: NativeCrashed) -> None:
        """Count the crash; the ``crash_threshold``-th within ``window`` opens the circuit
        (without ``allow_fallback`` native stays native: there is nowhere else to go)."""
        module_type = msg.module_type
        self._stats(module_type, "native").crashes += 1
        attributes = {telemetry.OPERATION: module_type}
        telemetry.native_crashes.add(1, attributes)
        span = telemetry.tracer.start_span("dspex.native_crash", attributes=attributes)
        span.set_attribute(telemetry.ERROR_TYPE, msg.error.partition("(")[0])
        span.end()
        settings = self.config.circuit
        now = self.node.loop.time()
        crashes = self.crashes.setdefault(module_type, deque())
        crashes.append(now)
        while crashes[0] <= now - settings.window:
            crashes.popleft()
        if (
            len(crashes) >= settings.crash_threshold
            and module_type not in self.circuits
            and self.config.allow_fallback
        ):
            crashes.clear()
            self._open(
                module_type, f"{settings.crash_threshold} native crashes, the last {msg.error}"
            )

    def _open(self, module_type: str, reason: str) -> None:
        now = self.node.loop.time()
        cooldown = self.config.circuit.cooldown
        self.circuits[module_type] = Circuit(now, now + cooldown)
        self._circuit_event(module_type, "open", reason)
        self._publish()

    def _claim_probe(self, module_type: str) -> bool:
        circuit = self.circuits.get(module_type)
        if circuit is None:  # closed meanwhile: native serves
            return True
        if not circuit.probe_due(self.node.loop.time()):
            return False
        self.circuits[module_type] = msgspec.structs.replace(circuit, probing=True)
        self._circuit_event(module_type, "half_open", "probe_granted")
        self._publish()
        return True

    def _probe_result(self, module_type: str, ok: bool) -> None:
        if module_type not in self.circuits:
            return
        if ok:
            del self.circuits[module_type]
            self.crashes.pop(module_type, None)  # a fresh count from the closing on
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
        if isinstance(msg, ClaimProbe):
            return self._claim_probe(msg.module_type)
        if isinstance(msg, Configure):
            try:
                config = self.config.replace(**msg.changes)
                self.registry.validate(config)
                fixed = [k for k in START_KEYS if getattr(config, k) != getattr(self.config, k)]
                if fixed:
                    raise ConfigError(
                        f"{', '.join(fixed)} cannot change at run time: read when the runtime "
                        "starts; start a Runtime with the new Config instead"
                    )
            except Exception as exc:  # a bad flag is the caller's error, never a router crash
                caller.fail(exc)
                return None
            self.config = config
            for module_type, rollout in config.rollout.items():
                if rollout.native_percent:  # a new rollout starts from a clean slate
                    self.rollbacks.pop(module_type, None)
                    self.rollout_stats.pop((module_type, "native"), None)
                    self.rollout_stats.pop((module_type, "dspy"), None)
            with telemetry.tracer.start_as_current_span("dspex.configure") as span:
                for key in msg.changes:  # as normalized: ChainOfThought for chain_of_thought
                    span.set_attribute(f"dspex.config.{key}", str(getattr(config, key)))
            self._publish()
            return config
        if isinstance(msg, GetMetrics):
            return self._report()
        return await super().handle_call(msg, caller)

    def _report(self) -> MetricsReport:
        """The metrics report, as of now."""
        now = self.node.loop.time()
        modules: dict[str, dict[str, ImplementationMetrics]] = {}
        for (module_type, impl), stats in self.stats.items():
            modules.setdefault(module_type, {})[impl] = stats.report()
        circuits: dict[str, str] = {t: c.state(now) for t, c in self.circuits.items()}
        shadow = {t: stats.report() for t, stats in self.shadows.items()}
        spent, config = self.cell.spent, self.config
        use = spent.runtime
        scopes: list[tuple[str, Budget | None, Use | None]] = [("runtime", config.budget, use)]
        scopes += [(t, b, spent.types.get(t)) for t, b in config.budgets.items()]
        budgets = {
            scope: BudgetReport(
                max_tokens=budget.max_tokens,
                max_cost=budget.max_cost,
                tokens=used.tokens if used is not None else 0,
                cost=used.cost if used is not None else 0.0,
                spent=used is not None and budget.spent(used.tokens, used.cost),
            )
            for scope, budget, used in scopes
            if budget is not None
        }
        return MetricsReport(
            modules=modules,
            circuits=circuits,
            restarts=dict(self.restarts),
            rollbacks=dict(self.rollbacks),
            shadow=shadow,
            usage=UsageReport(
                prompt_tokens=use.prompt_tokens,
                completion_tokens=use.completion_tokens,
                total_tokens=use.tokens,
                cost=use.cost if use.priced else None,
                unpriced_calls=use.unpriced,
            ),
            budgets=budgets,
        )

    async def terminate(self, reason: object) -> None:
        """Leave the last report in the cell, for ``runtime.metrics()`` once the router is gone
        (after the runtime stopped: the final figures, the drained calls included)."""
        self.cell.final = self._report()
