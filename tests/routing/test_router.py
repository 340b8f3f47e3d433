"""RouterActor: metrics from outcomes, the adaptive leader, circuits and run-time flags."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest

from dspex.config import Config
from dspex.errors import ConfigError
from dspex.routing import (
    ClaimProbe,
    Configure,
    GetMetrics,
    MetricsReport,
    ModuleRestarted,
    NativeCrashed,
    Outcome,
    ProbeAbandoned,
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
    ref = await runtime.node.spawn(RouterActor, REGISTRY, Config(**config), cell)  # type: ignore[arg-type]
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


def _crash(ref: object, module_type: str = "Predict") -> None:
    ref.cast(NativeCrashed(module_type, "KeyError('answer')"))  # type: ignore[attr-defined]


async def test_native_crashes_open_the_circuit_at_the_threshold(runtime: Runtime) -> None:
    ref, cell = await _router(runtime, circuit={"crash_threshold": 3})
    for _ in range(2):
        _crash(ref)
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.circuits == {}
    assert report.modules["Predict"]["native"].crashes == 2
    _crash(ref)
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.circuits == {"Predict": "open"}
    assert report.modules["Predict"]["native"].crashes == 3
    assert cell.snapshot.circuit_state("Predict", runtime.loop.time()) == "open"
    assert report.restarts == {}  # a crash in a call restarts no actor


async def test_crashes_further_apart_than_the_window_do_not_add_up(runtime: Runtime) -> None:
    ref, _ = await _router(runtime, circuit={"crash_threshold": 2, "window": 0.05})
    _crash(ref)
    await ref.call(GetMetrics())  # type: ignore[attr-defined]
    await asyncio.sleep(0.06)  # the first crash leaves the window
    _crash(ref)
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.circuits == {}
    _crash(ref)  # the second within the window of the previous one
    assert (await ref.call(GetMetrics())).circuits == {"Predict": "open"}  # type: ignore[attr-defined]


async def test_without_fallback_crashes_never_open_the_circuit(runtime: Runtime) -> None:
    ref, _ = await _router(runtime, allow_fallback=False, circuit={"crash_threshold": 1})
    _crash(ref)
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.circuits == {}  # native is all there is: it stays native
    assert report.modules["Predict"]["native"].crashes == 1


async def test_one_probe_is_granted_after_the_cooldown_and_its_success_closes_it(
    runtime: Runtime,
) -> None:
    ref, cell = await _router(runtime, circuit={"crash_threshold": 1, "cooldown": 0.05})
    _crash(ref)
    assert await ref.call(ClaimProbe("Predict")) is False  # type: ignore[attr-defined]  # open
    opened = cell.snapshot
    await asyncio.sleep(0.06)  # the cool-down is over: half-open
    assert await ref.call(ClaimProbe("Predict")) is True  # type: ignore[attr-defined]
    assert await ref.call(ClaimProbe("Predict")) is False  # type: ignore[attr-defined]  # one
    assert cell.snapshot.circuits["Predict"].probing
    assert not opened.circuits["Predict"].probing  # a published snapshot never changes
    with pytest.raises(AttributeError):
        cell.snapshot.circuits["Predict"].probing = False  # type: ignore[misc]
    ref.cast(Outcome("Predict", "native", 0.01, ok=True, probe=True))  # type: ignore[attr-defined]
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.circuits == {}
    assert cell.snapshot.circuits == {}
    assert await ref.call(ClaimProbe("Predict")) is True  # type: ignore[attr-defined]  # closed
    _crash(ref)  # the count starts afresh at the closing: one crash is the threshold again
    assert (await ref.call(GetMetrics())).circuits == {"Predict": "open"}  # type: ignore[attr-defined]


async def test_a_failed_probe_opens_the_circuit_again(runtime: Runtime) -> None:
    ref, cell = await _router(runtime, circuit={"crash_threshold": 1, "cooldown": 0.05})
    _crash(ref)
    await ref.call(GetMetrics())  # type: ignore[attr-defined]
    first = cell.snapshot.circuits["Predict"]
    await asyncio.sleep(0.06)
    assert await ref.call(ClaimProbe("Predict")) is True  # type: ignore[attr-defined]
    ref.cast(Outcome("Predict", "native", 0.01, ok=False, probe=True))  # type: ignore[attr-defined]
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    second = cell.snapshot.circuits["Predict"]
    assert report.circuits == {"Predict": "open"}
    assert second.until > first.until
    assert not second.probing
    assert await ref.call(ClaimProbe("Predict")) is False  # type: ignore[attr-defined]


async def test_a_probe_whose_call_was_cancelled_while_claiming_it_reopens_the_circuit(
    runtime: Runtime,
) -> None:
    ref, cell = await _router(runtime, circuit={"crash_threshold": 1, "cooldown": 0.05})
    _crash(ref)
    await asyncio.sleep(0.06)
    ref.cast(ProbeAbandoned("Predict"))  # type: ignore[attr-defined]  # none granted: no-op
    await ref.call(GetMetrics())  # type: ignore[attr-defined]
    first = cell.snapshot.circuits["Predict"]
    assert await ref.call(ClaimProbe("Predict")) is True  # type: ignore[attr-defined]
    ref.cast(ProbeAbandoned("Predict"))  # type: ignore[attr-defined]  # it will never report
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    second = cell.snapshot.circuits["Predict"]
    assert report.circuits == {"Predict": "open"}
    assert (second.probing, second.until > first.until) == (False, True)


async def test_module_restarts_are_counted_per_module_type(runtime: Runtime) -> None:
    ref, _ = await _router(runtime)
    ref.cast(ModuleRestarted("Predict"))  # type: ignore[attr-defined]
    ref.cast(ModuleRestarted("Predict"))  # type: ignore[attr-defined]
    report = await ref.call(GetMetrics())  # type: ignore[attr-defined]
    assert report.restarts == {"Predict": 2}
    assert report.circuits == {}  # restarts are a metric: only crash reports move circuits


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
    for _ in range(3):
        _crash(ref)
    ref.cast(ModuleRestarted("Predict"))  # type: ignore[attr-defined]
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
    assert (native["calls"], native["successes"], native["crashes"]) == (1, 1, 3)
    assert native["latency_p50_ms"] == pytest.approx(10)
    assert plain["circuits"] == {"Predict": "open"}
    assert plain["restarts"] == {"Predict": 1}
    assert plain["rollbacks"] == {}
    shadow = plain["shadow"]["Predict"]
    assert (shadow["calls"], shadow["agreement_rate"]) == (1, 0.0)
    divergence = shadow["divergences"][0]
    assert divergence["fields"] == ["answer"]
    assert divergence["shadow_output"] == {"answer": "Lyon"}
    inputs = divergence["inputs"]
    assert (inputs["asked"], inputs["tags"]) == ("2024-05-01", ["a", "b"])
    assert inputs["blob"].startswith("<object object at")  # what JSON cannot hold: its str()
