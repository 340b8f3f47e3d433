"""RouterActor: metrics from outcomes, the adaptive leader, circuits and run-time flags."""

from __future__ import annotations

import datetime
import json

import pytest

from dspex.config import Config
from dspex.errors import ConfigError
from dspex.routing import (
    Configure,
    GetMetrics,
    MetricsReport,
    NativeCrashed,
    OpenCircuit,
    Outcome,
    Registry,
    RouterActor,
    RoutingSnapshot,
    ShadowResult,
    SnapshotCell,
)
from dspex.runtime import Runtime

REGISTRY = Registry({"Predict": ["native", "dspy"], "ReAct": ["dspy"]})


async def _router(runtime: Runtime, **config: object) -> tuple[object, SnapshotCell]:
    cell = SnapshotCell(RoutingSnapshot(0, Config(), REGISTRY, {}, {}))
    ref = await runtime.spawn(RouterActor, REGISTRY, Config(**config), cell)  # type: ignore[arg-type]
    return ref, cell


async def test_outcomes_become_metrics(runtime: Runtime) -> None:
    ref, _ = await _router(runtime)
    for ms in (10, 20, 30, 40):
        ref.cast(Outcome("Predict", "native", ms / 1000, ok=True))  # type: ignore[attr-defined]
    ref.cast(Outcome("Predict", "native", 0.05, ok=False, fell_back=True))  # type: ignore[attr-defined]
    ref.cast(Outcome("Predict", "dspy", 0.1, ok=True))  # type: ignore[attr-defined]
    report: MetricsReport = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    native = report.modules["Predict"]["native"]
    assert (native.calls, native.successes, native.failures, native.fallbacks) == (5, 4, 1, 1)
    assert native.success_rate == pytest.approx(0.8)
    assert native.latency_p50_ms == pytest.approx(30)
    assert report.modules["Predict"]["dspy"].calls == 1


async def test_adaptive_leader_moves_to_the_faster_implementation(runtime: Runtime) -> None:
    ref, cell = await _router(runtime, adaptive={"min_samples": 3})
    for _ in range(3):
        ref.cast(Outcome("Predict", "native", 0.2, ok=True))  # type: ignore[attr-defined]
        ref.cast(Outcome("Predict", "dspy", 0.1, ok=True))  # type: ignore[attr-defined]
    await ref.call(GetMetrics())  # type: ignore[attr-defined]  # the casts are processed
    assert cell.snapshot.adaptive["Predict"] == "dspy"


async def test_adaptive_leader_prefers_success_over_speed(runtime: Runtime) -> None:
    ref, cell = await _router(runtime, adaptive={"min_samples": 3})
    for _ in range(5):
        ref.cast(Outcome("Predict", "native", 0.01, ok=False))  # type: ignore[attr-defined]
        ref.cast(Outcome("Predict", "dspy", 0.5, ok=True))  # type: ignore[attr-defined]
    await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert cell.snapshot.adaptive["Predict"] == "dspy"


async def test_circuit_opens_then_a_successful_probe_closes_it(runtime: Runtime) -> None:
    ref, cell = await _router(runtime)
    ref.cast(OpenCircuit("Predict", "fallback_restart"))  # type: ignore[attr-defined]
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.circuits == {"Predict": "open"}
    assert "Predict" in cell.snapshot.circuits
    ref.cast(Outcome("Predict", "native", 0.01, ok=True, probe=True))  # type: ignore[attr-defined]
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.circuits == {}
    assert cell.snapshot.circuits == {}


async def test_failed_or_crashed_probe_reopens_the_circuit(runtime: Runtime) -> None:
    ref, cell = await _router(runtime)
    ref.cast(OpenCircuit("Predict", "fallback_restart"))  # type: ignore[attr-defined]
    await ref.call(GetMetrics())  # type: ignore[attr-defined]
    first = cell.snapshot.circuits["Predict"]
    ref.cast(Outcome("Predict", "native", 0.01, ok=False, probe=True))  # type: ignore[attr-defined]
    await ref.call(GetMetrics())  # type: ignore[attr-defined]
    second = cell.snapshot.circuits["Predict"]
    assert second is not first
    assert second.until >= first.until
    ref.cast(NativeCrashed("Predict"))  # type: ignore[attr-defined]
    await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert cell.snapshot.circuits["Predict"] is second  # a crash that is not a probe's
    assert second.claim_probe(second.until)
    ref.cast(NativeCrashed("Predict"))  # type: ignore[attr-defined]
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert cell.snapshot.circuits["Predict"] is not second  # the probe crashed: open again
    assert report.modules["Predict"]["native"].restarts == 2


async def test_configure_changes_flags_at_run_time_and_validates(runtime: Runtime) -> None:
    ref, cell = await _router(runtime)
    version = cell.snapshot.version
    config = await ref.call(Configure({"implementation_preference": "dspy_first"}))  # type: ignore[attr-defined]
    assert config.implementation_preference == "dspy_first"
    assert cell.snapshot.config is config
    assert cell.snapshot.version == version + 1
    with pytest.raises(ConfigError, match="implementation_preference"):
        await ref.call(Configure({"implementation_preference": "fastest"}))  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="ReAct has only"):
        await ref.call(Configure({"module_overrides": {"ReAct": "native"}}))  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unknown config key"):
        await ref.call(Configure({"colour": "blue"}))  # type: ignore[attr-defined]
    assert cell.snapshot.config is config  # rejected changes change nothing
    assert ref.alive  # type: ignore[attr-defined]


async def test_the_report_as_plain_data_for_json(runtime: Runtime) -> None:
    ref, _ = await _router(runtime)
    ref.cast(Outcome("Predict", "native", 0.01, ok=True))  # type: ignore[attr-defined]
    ref.cast(NativeCrashed("Predict"))  # type: ignore[attr-defined]
    ref.cast(OpenCircuit("Predict", "3 native crashes"))  # type: ignore[attr-defined]
    when = datetime.date(2024, 5, 1)
    ref.cast(  # type: ignore[attr-defined]
        ShadowResult(
            module_type="Predict",
            primary="native",
            fields={"answer": False},
            primary_ms=1.0,
            shadow_ms=2.0,
            inputs={"question": "q", "asked": when, "tags": ("a", "b"), "blob": object()},
            primary_output={"answer": "Paris"},
            shadow_output={"answer": "Lyon"},
        )
    )
    report: MetricsReport = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    plain = json.loads(json.dumps(report.to_dict()))
    native = plain["modules"]["Predict"]["native"]
    assert (native["calls"], native["successes"], native["restarts"]) == (1, 1, 1)
    assert native["latency_p50_ms"] == pytest.approx(10)
    assert plain["circuits"] == {"Predict": "open"}
    assert plain["rollbacks"] == {}
    shadow = plain["shadow"]["Predict"]
    assert (shadow["calls"], shadow["agreement_rate"]) == (1, 0.0)
    divergence = shadow["divergences"][0]
    assert divergence["fields"] == ["answer"]
    assert divergence["shadow_output"] == {"answer": "Lyon"}
    inputs = divergence["inputs"]
    assert (inputs["asked"], inputs["tags"]) == ("2024-05-01", ["a", "b"])
    assert inputs["blob"].startswith("<object object at")  # what JSON cannot hold: its str()
