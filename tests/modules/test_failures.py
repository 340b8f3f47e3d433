"""Let it crash, retry, fall back, open and close the circuit."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import Config
from dspex.errors import ActorExited, LMError, ParseError
from dspex.runtime import Runtime
from dspex.testing import InjectedCrash, RecordedRequest, Reply, ScriptedLM, Status, inject_faults
from tests.modules.conftest import ANSWER


async def test_a_native_bug_restarts_the_actor_and_the_call_is_retried(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    faulty = inject_faults(rt, crash_on={1})
    predict = await dspex.Predict.create("question -> answer")
    first = predict.actor
    result = await predict(question="Capital of France?")
    assert result.answer == "Paris"
    # retried on the restarted actor, on dspy since native just crashed under it
    assert result.implementation == "dspy"
    assert result.fallback_reason == "native crashed: InjectedCrash('injected crash on call 1')"
    assert faulty.calls == 1
    assert (await predict(question="again")).implementation == "native"  # native serves again
    assert predict.actor is not first
    assert not first.alive
    assert isinstance(first.exit_reason, InjectedCrash)
    report = await rt.metrics()
    assert report.modules["Predict"]["native"].restarts == 1
    assert report.circuits == {}
    assert [s.name for s in spans.get_finished_spans()].count("dspex.restart") == 1


async def test_other_calls_in_flight_are_retried_too(rt: Runtime, server: ScriptedLM) -> None:
    server.script = lambda req: Reply(ANSWER(req).text, latency=0.05)
    predict = await dspex.Predict.create("question -> answer")
    inject_faults(rt, crash_on={3})
    results = await asyncio.gather(*(predict(question=f"q{i}") for i in range(5)))
    assert [r.answer for r in results] == ["Paris"] * 5


async def test_forced_native_retries_on_native_then_fails_with_a_clear_error(
    rt: Runtime,
) -> None:
    inject_faults(rt, crash_on={1, 2})
    predict = await dspex.Predict.create("question -> answer", implementation="native")
    with pytest.raises(ActorExited, match="injected crash on call 2") as info:
        await predict(question="q")
    assert isinstance(info.value.reason, InjectedCrash)
    assert (await predict(question="q")).answer == "Paris"  # the module serves again


@pytest.mark.parametrize(
    "config",
    [Config(adaptive={"explore_rate": 0.0}, circuit={"crash_threshold": 2, "cooldown": 0.2})],
)
async def test_repeated_crashes_fall_back_to_dspy_until_a_probe_succeeds(rt: Runtime) -> None:
    faulty = inject_faults(rt, crash_rate=1.0)
    predict = await dspex.Predict.create("question -> answer")
    await predict.execute({"question": "q"}, implementation="dspy")  # DSPy and LiteLLM loaded
    for _ in range(2):  # each call crashes native once and is retried on dspy
        assert (await predict(question="q")).implementation == "dspy"
    served = await predict(question="q")  # the 2nd crash restarted it for the fallback
    assert served.implementation == "dspy"
    assert not served.fallback  # routed there: the native circuit is open
    assert (await rt.metrics()).circuits == {"Predict": "open"}
    assert (await predict.info()).circuit == "open"
    calls_while_open = faulty.calls
    faulty.remove()  # native is healthy again
    await asyncio.sleep(0.25)  # the cool-down is wall-clock time; nothing to await instead
    probe = await predict(question="q")
    assert probe.implementation == "native"
    assert faulty.calls == calls_while_open  # the probe ran on the real backend
    assert (await rt.metrics()).circuits == {}
    assert (await predict(question="q")).implementation == "native"


@pytest.mark.parametrize(
    "config",
    [Config(adaptive={"explore_rate": 0.0}, circuit={"crash_threshold": 1, "cooldown": 0.05})],
)
async def test_a_failing_probe_opens_the_circuit_again(rt: Runtime) -> None:
    inject_faults(rt, crash_on={1}, fail_on={2})
    predict = await dspex.Predict.create("question -> answer")
    await predict.execute({"question": "q"}, implementation="dspy")  # DSPy and LiteLLM loaded
    served = await predict(question="q")  # crash 1 opens the circuit; the retry runs on dspy
    assert served.implementation == "dspy"
    await asyncio.sleep(0.06)  # the cool-down
    probe = await predict(question="q")  # native probe fails with an LM error: dspy answers
    assert probe.implementation == "dspy"
    assert probe.fallback
    assert (await rt.metrics()).circuits == {"Predict": "open"}


def _junk_then(answer_after: int) -> object:
    seen: list[RecordedRequest] = []

    def script(request: RecordedRequest) -> Reply:
        seen.append(request)
        return Reply("no idea") if len(seen) <= answer_after else ANSWER(request)

    return script


async def test_parse_error_falls_back_to_dspy_and_says_so(
    rt: Runtime, server: ScriptedLM, spans: InMemorySpanExporter
) -> None:
    server.script = _junk_then(2)  # native's ChatAdapter try and its JSONAdapter retry
    predict = await dspex.Predict.create("question -> answer")
    result = await predict(question="q")
    assert result.answer == "Paris"
    assert result.implementation == "dspy"
    assert result.fallback
    assert result.fallback_reason is not None
    assert result.fallback_reason.startswith("ParseError")
    assert len(server.requests) == 3
    native = (await rt.metrics()).modules["Predict"]["native"]
    assert (native.failures, native.fallbacks) == (1, 1)
    (route,) = [s.attributes for s in spans.get_finished_spans() if s.name == "dspex.route"]
    assert route is not None
    assert route["dspex.fallback"] is True
    assert route["dspex.fallback.reason"] == "ParseError"
    assert route["dspex.implementation"] == "dspy"


@pytest.mark.parametrize("config", [Config(allow_fallback=False, adaptive={"explore_rate": 0.0})])
async def test_without_fallback_a_parse_error_reaches_the_caller(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = "no idea"
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(ParseError) as info:
        await predict(question="q")
    assert info.value.lm_response == "no idea"
    assert info.value.adapter_name == "JSONAdapter"  # after DSPy's own JSON retry
    assert predict.actor.alive  # expected failures never crash the actor


async def test_lm_errors_fall_back_and_fail_clearly_when_dspy_fails_too(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = Status(400, message="bad request")
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(LMError) as info:
        await predict(question="q")
    assert info.value.status == 400
    assert len(server.requests) == 2  # native once (400 is not retried), then dspy once
    assert predict.actor.alive
