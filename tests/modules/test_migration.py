"""Gradual migration: canary rollout with rollback, sticky keys, shadow comparison, flags."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import Config
from dspex.errors import ConfigError
from dspex.runtime import Runtime
from dspex.testing import RecordedRequest, Reply, ScriptedLM, inject_faults
from tests.modules.conftest import ANSWER

NO_EXPLORE = {"explore_rate": 0.0}


async def _served(module: dspex.ModuleRef, calls: int, **kwargs: object) -> list[str]:
    return [(await module(question=f"q{i}", **kwargs)).implementation for i in range(calls)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("percent", "low", "high"), [(0.0, 0, 0), (50.0, 60, 140), (100.0, 200, 200)]
)
async def test_canary_routes_its_percentage_to_native(
    rt: Runtime, percent: float, low: int, high: int
) -> None:
    await rt.configure(rollout={"Predict": {"native_percent": percent}})
    predict = await dspex.Predict.create("question -> answer")
    served = await _served(predict, 200)
    assert low <= served.count("native") <= high  # 50%: 100 +/- 40 is more than 5 sigma
    assert served.count("native") + served.count("dspy") == 200


async def test_a_request_key_keeps_a_user_on_one_implementation(rt: Runtime) -> None:
    await rt.configure(rollout={"Predict": {"native_percent": 50}})
    predict = await dspex.Predict.create("question -> answer")
    seen: dict[str, set[str]] = {}
    for user in range(30):
        for _ in range(4):
            pred = await predict.execute({"question": "q"}, key=f"user-{user}")
            seen.setdefault(f"user-{user}", set()).add(pred.implementation)
    assert all(len(impls) == 1 for impls in seen.values())
    assert {impl for impls in seen.values() for impl in impls} == {"native", "dspy"}


async def test_native_doing_worse_rolls_the_canary_back(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    rollout = {"native_percent": 50, "min_calls": 5, "max_error_rate_increase": 0.2}
    await rt.configure(rollout={"Predict": rollout})
    predict = await dspex.Predict.create("question -> answer")
    with inject_faults(rt, fail_rate=1.0, seed=0):  # every native call fails (and falls back)
        for i in range(40):
            await predict(question=f"q{i}")
            if rt.config.rollout["Predict"].native_percent == 0:
                break
    assert rt.config.rollout["Predict"].native_percent == 0
    report = await rt.metrics()
    assert "native error rate" in report.rollbacks["Predict"]
    assert set(await _served(predict, 20)) == {"dspy"}  # rolled back: no native any more
    assert [s.name for s in spans.get_finished_spans()].count("dspex.rollback") == 1


async def test_slow_native_rolls_the_canary_back_on_latency(rt: Runtime) -> None:
    rollout = {"native_percent": 100, "min_calls": 3, "max_latency_ratio": 2.0}
    await rt.configure(rollout={"Predict": rollout})
    predict = await dspex.Predict.create("question -> answer")
    for i in range(3):
        await predict.execute({"question": f"q{i}"}, implementation="dspy")
    router = rt.node.resolve("dspex.router")
    for _ in range(3):  # native reported much slower than dspy
        router.cast(dspex.routing.Outcome("Predict", "native", 5.0, ok=True))
    await rt.metrics()
    assert "native latency" in (await rt.metrics()).rollbacks["Predict"]
    assert rt.config.rollout["Predict"].native_percent == 0


async def test_rollout_of_a_type_without_native_is_rejected(rt: Runtime) -> None:
    with pytest.raises(ConfigError, match="rollout\\['ProgramOfThought'\\]"):
        await rt.configure(rollout={"ProgramOfThought": {"native_percent": 10}})
    with pytest.raises(ConfigError, match="native_percent"):
        await rt.configure(rollout={"Predict": {"native_percent": 101}})


def _answers_by_arrival(latency_of_second: float = 0.0) -> object:
    """Odd requests answer Paris at once, even ones Lyon after ``latency_of_second``."""
    count = 0

    def script(request: RecordedRequest) -> Reply:
        nonlocal count
        count += 1
        text = ANSWER(request).text
        if count % 2 == 0:
            return Reply(str(text).replace("Paris", "Lyon"), latency=latency_of_second)
        return Reply(text)

    return script


@pytest.mark.parametrize(
    "config",
    [Config(shadow={"Predict": {"rate": 1.0}}, adaptive=NO_EXPLORE)],  # type: ignore[arg-type]
)
async def test_shadow_records_a_divergence_without_touching_the_caller(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = _answers_by_arrival(latency_of_second=0.5)
    predict = await dspex.Predict.create("question -> answer")
    start = time.perf_counter()
    result = await predict(question="Capital of France?")
    elapsed = time.perf_counter() - start
    assert result.answer == "Paris"  # the caller's answer is the primary's
    assert result.implementation == "native"
    assert elapsed < 0.5  # the slow shadow did not delay it
    for _ in range(200):  # the shadow finishes in the background
        report = await rt.metrics()
        if "Predict" in report.shadow:
            break
        await asyncio.sleep(0.01)
    shadow = report.shadow["Predict"]
    assert (shadow.calls, shadow.agreement_rate, shadow.field_agreement) == (
        1,
        0.0,
        {"answer": 0.0},
    )
    (divergence,) = shadow.divergences
    assert divergence.primary == "native"
    assert divergence.primary_output == {"answer": "Paris"}
    assert divergence.shadow_output == {"answer": "Lyon"}
    assert divergence.inputs == {"question": "Capital of France?"}
    assert shadow.shadow_p50_ms >= 500 > shadow.primary_p50_ms


@pytest.mark.parametrize(
    "config",
    [Config(shadow={"Predict": {"rate": 1.0, "max_in_flight": 1}}, adaptive=NO_EXPLORE)],  # type: ignore[arg-type]
)
async def test_shadow_calls_are_bounded_and_agreements_counted(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = lambda request: Reply(ANSWER(request).text, latency=0.1)
    predict = await dspex.Predict.create("question -> answer")
    await asyncio.gather(*(predict(question=f"q{i}") for i in range(10)))
    for _ in range(6000):  # the one shadow in flight finishes (its dspy worker may be starting)
        report = await rt.metrics()
        if "Predict" in report.shadow:
            break
        await asyncio.sleep(0.01)
    shadow = report.shadow["Predict"]
    assert 1 <= shadow.calls < 10  # at most one at a time: most calls were not shadowed
    assert shadow.agreement_rate == 1.0
    assert shadow.divergences == []


async def test_flag_changes_are_followed_and_recorded(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    assert (await predict(question="q")).implementation == "native"
    await rt.configure(implementation_preference="dspy_first", allow_fallback=False)
    assert (await predict(question="q")).implementation == "dspy"
    (configure,) = [s for s in spans.get_finished_spans() if s.name == "dspex.configure"]
    assert dict(configure.attributes or {}) == {
        "dspex.config.implementation_preference": "dspy_first",
        "dspex.config.allow_fallback": "False",
    }
