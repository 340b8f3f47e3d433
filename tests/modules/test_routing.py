"""The router's rules, seen through the facades, with the route spans they leave."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import Config
from dspex.errors import ConfigError
from dspex.routing import GetMetrics, Outcome
from dspex.runtime import Runtime


def route_spans(spans: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [dict(s.attributes or {}) for s in spans.get_finished_spans() if s.name == "dspex.route"]


async def test_auto_starts_on_native_and_records_the_route(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    cot = await dspex.ChainOfThought.create("question -> answer")
    result = await cot(question="Capital of France?")
    assert result.implementation == "native"
    (route,) = route_spans(spans)
    assert route == {
        "dspex.operation": "ChainOfThought",
        "dspex.native_available": True,
        "dspex.route.reason": "adaptive",
        "dspex.implementation": "native",
        "dspex.fallback": False,
    }
    names = {s.name for s in spans.get_finished_spans()}
    assert {"dspex.route", "dspex.module.execute", "chat scripted"} <= names


async def test_forced_implementation_wins(rt: Runtime, spans: InMemorySpanExporter) -> None:
    await rt.configure(implementation_preference="native_first")
    forced = await dspex.Predict.create("question -> answer", implementation="dspy")
    assert (await forced(question="q")).implementation == "dspy"
    plain = await dspex.Predict.create("question -> answer")
    assert (
        await plain.execute({"question": "q"}, implementation="python")
    ).implementation == "dspy"
    assert [r["dspex.route.reason"] for r in route_spans(spans)] == ["forced", "forced"]


async def test_forcing_a_missing_implementation_is_an_error_at_create(rt: Runtime) -> None:
    with pytest.raises(ConfigError, match="ProgramOfThought has no 'native' implementation"):
        await dspex.ProgramOfThought.create("question -> answer", implementation="native")
    with pytest.raises(ConfigError, match="must be one of 'native', 'dspy'"):
        await dspex.Predict.create("question -> answer", implementation="rust")


@pytest.mark.parametrize(
    "config", [Config(module_overrides={"Predict": "dspy"}, adaptive={"explore_rate": 0.0})]
)
async def test_module_override(rt: Runtime, spans: InMemorySpanExporter) -> None:
    predict = await dspex.Predict.create("question -> answer")
    cot = await dspex.ChainOfThought.create("question -> answer")
    assert (await predict(question="q")).implementation == "dspy"
    assert (await cot(question="q")).implementation == "native"
    assert [r["dspex.route.reason"] for r in route_spans(spans)] == ["override", "adaptive"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (Config(implementation_preference="native_first"), "native"),
        (Config(implementation_preference="dspy_first"), "dspy"),
        (Config(implementation_preference="python_first"), "dspy"),  # type: ignore[arg-type]
    ],
)
async def test_static_preferences(rt: Runtime, expected: str) -> None:
    predict = await dspex.Predict.create("question -> answer")
    assert (await predict(question="q")).implementation == expected


async def test_unavailable_native_routes_to_dspy(rt: Runtime, spans: InMemorySpanExporter) -> None:
    await rt.configure(implementation_preference="native_first")
    import dspy

    wrapped = await dspex.Module.wrap(lambda: dspy.Predict("question -> answer"), lm=rt.lm)
    result = await wrapped(question="Capital of France?")
    assert result.implementation == "dspy"
    assert result.answer == "Paris"
    route = route_spans(spans)[-1]
    assert route["dspex.native_available"] is False
    assert route["dspex.implementation"] == "dspy"
    assert route["dspex.route.reason"] == "only"


@pytest.mark.parametrize("config", [Config(adaptive={"explore_rate": 0.0, "min_samples": 3})])
async def test_auto_follows_the_metrics(rt: Runtime) -> None:
    predict = await dspex.Predict.create("question -> answer")
    assert (await predict(question="q")).implementation == "native"
    router = rt.node.resolve("dspex.router")
    for _ in range(5):  # dspy answers much faster than native, as the router now sees it
        router.cast(Outcome("Predict", "native", 0.5, ok=True))
        router.cast(Outcome("Predict", "dspy", 0.01, ok=True))
    await router.call(GetMetrics())  # the outcomes are in
    assert (await predict(question="q")).implementation == "dspy"
    assert (await rt.metrics()).modules["Predict"]["dspy"].calls >= 5


@pytest.mark.parametrize("config", [Config(adaptive={"explore_rate": 1.0}, preload_dspy=True)])
async def test_auto_keeps_sampling_the_other_implementation(rt: Runtime) -> None:
    # explored once the dspy implementation takes calls (test_explore.py): preloaded here
    predict = await dspex.Predict.create("question -> answer")
    assert (await predict(question="q")).implementation == "dspy"  # always explore


async def test_flags_change_at_run_time_and_are_validated(rt: Runtime) -> None:
    predict = await dspex.Predict.create("question -> answer")
    assert (await predict(question="q")).implementation == "native"
    await rt.configure(module_overrides={"Predict": "python"})
    assert (await predict(question="q")).implementation == "dspy"
    with pytest.raises(ConfigError, match="implementation_preference must be"):
        await rt.configure(implementation_preference="fastest")
    assert rt.config.module_overrides == {"Predict": "dspy"}


async def test_metrics_count_calls_per_type_and_implementation(rt: Runtime) -> None:
    predict = await dspex.Predict.create("question -> answer")
    for _ in range(3):
        await predict(question="q")
    await predict.execute({"question": "q"}, implementation="dspy")
    report = await rt.metrics()
    native, dspy = report.modules["Predict"]["native"], report.modules["Predict"]["dspy"]
    assert (native.calls, native.successes, dspy.calls) == (3, 3, 1)
    assert native.latency_p50_ms > 0
