"""A crash fails its own call only; the actor crashes only when its own state breaks; circuits."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import Config
from dspex.errors import ActorExited, ModuleError, ParseError
from dspex.runtime import Runtime
from dspex.testing import (
    InjectedCrash,
    RecordedRequest,
    Reply,
    ScriptedLM,
    assert_native_crashed,
    assert_restarted,
    inject_faults,
)
from tests.modules.conftest import ANSWER


def _span_names(spans: InMemorySpanExporter) -> list[str]:
    return [s.name for s in spans.get_finished_spans()]


async def test_a_native_bug_fails_only_its_call_which_is_rerun_on_dspy(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    faulty = inject_faults(rt, crash_on={1})
    predict = await dspex.Predict.create("question -> answer")
    actor = predict.actor
    result = await predict(question="Capital of France?")
    assert result.answer == "Paris"
    assert result.implementation == "dspy"
    assert result.fallback
    assert result.fallback_reason == "NativeCrash: InjectedCrash('injected crash on call 1')"
    assert faulty.calls == 1
    assert (await predict(question="again")).implementation == "native"  # native serves again
    assert predict.actor is actor  # the actor never crashed
    assert actor.alive
    await assert_native_crashed(rt, "Predict", 1)
    await assert_restarted(rt, "Predict", 0)
    report = await rt.metrics()
    assert report.circuits == {}  # one crash is below the threshold
    assert _span_names(spans).count("dspex.native_crash") == 1
    assert "dspex.restart" not in _span_names(spans)


async def test_a_crash_in_1_of_50_concurrent_calls_costs_that_call_alone(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = lambda request: Reply(ANSWER(request).text, latency=0.05)
    predict = await dspex.Predict.create("question -> answer")
    actor = predict.actor
    inject_faults(rt, crash_after_request_on={25})  # a bug in parsing, after the LM answered
    results = await asyncio.gather(
        *(predict(question=f"q{i}") for i in range(50)), return_exceptions=True
    )
    assert [type(r) for r in results] == [dspex.Prediction] * 50  # no ActorExited, no error
    assert all(r.answer == "Paris" for r in results)  # type: ignore[union-attr]
    (crashed,) = [r for r in results if r.fallback]  # type: ignore[union-attr]
    assert crashed.implementation == "dspy"
    assert crashed.fallback_reason == (
        "NativeCrash: InjectedCrash('injected crash after the LM request of call 25')"
    )
    assert sum(r.implementation == "native" for r in results) == 49  # type: ignore[union-attr]
    assert len(server.requests) == 51  # 50 on native, and the crashed one again on dspy
    assert predict.actor is actor
    await assert_restarted(rt, "Predict", 0)
    await assert_native_crashed(rt, "Predict", 1)


@pytest.mark.parametrize("forced", [True, False])
@pytest.mark.parametrize(
    "config",
    [Config(allow_fallback=False, adaptive={"explore_rate": 0.0})],
)
async def test_without_fallback_a_crash_is_a_module_error_naming_it(
    rt: Runtime, server: ScriptedLM, forced: bool
) -> None:
    inject_faults(rt, crash_on={1})
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(ModuleError, match=r"Predict crashed in native code: InjectedCrash\(") as e:
        await predict.execute({"question": "q"}, implementation="native" if forced else None)
    assert isinstance(e.value.__cause__, InjectedCrash)
    assert e.value.fallback_error is None
    assert server.requests == []  # crash_on crashes before the request; no dspy attempt
    assert (await predict(question="q")).implementation == "native"  # it serves again
    await assert_restarted(rt, "Predict", 0)


async def test_forced_native_never_falls_back(rt: Runtime, server: ScriptedLM) -> None:
    inject_faults(rt, crash_on={1})
    predict = await dspex.Predict.create("question -> answer", implementation="native")
    with pytest.raises(ModuleError, match="injected crash on call 1"):
        await predict(question="q")
    assert server.requests == []
    assert (await predict(question="q")).implementation == "native"


async def test_the_native_instance_is_rebuilt_after_a_crash(rt: Runtime) -> None:
    """A bug that leaves the native module broken costs one call: the actor rebuilds it."""

    class LeavesItBroken:
        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.broken: list[object] = []  # held, so that no new instance reuses their ids
            self.builds = 0

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def create(self, spec: object) -> object:
            self.builds += 1
            return await self.inner.create(spec)  # type: ignore[attr-defined]

        async def execute(self, instance: object, inputs: object, options: object) -> object:
            if not self.broken or any(instance is b for b in self.broken):
                self.broken.append(instance)  # the first call breaks its instance for good
                raise RuntimeError("corrupted module state")
            return await self.inner.execute(instance, inputs, options)  # type: ignore[attr-defined]

    wrapper = LeavesItBroken(rt.backends["native"])
    rt.backends["native"] = wrapper  # type: ignore[assignment]
    predict = await dspex.Predict.create("question -> answer")
    first = await predict(question="q")
    assert first.fallback_reason == "NativeCrash: RuntimeError('corrupted module state')"
    assert wrapper.builds == 2  # built at start, rebuilt after the crash
    assert (await predict(question="q")).implementation == "native"  # on the new instance


async def test_a_module_whose_own_state_breaks_crashes_and_is_restarted(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    await predict.set_demos([{"question": "Capital of Italy?", "answer": "Rome"}])
    first = predict.actor
    inject_faults(rt, crash_actor_on={1})  # the call crashes and the rebuild fails
    result = await predict(question="q")  # sent again to the restarted actor
    assert (result.answer, result.implementation) == ("Paris", "native")
    assert not first.alive
    assert isinstance(first.exit_reason, InjectedCrash)
    assert "rebuild" in str(first.exit_reason)
    assert predict.actor is not first
    await assert_restarted(rt, "Predict", 1)
    await assert_native_crashed(rt, "Predict", 1)
    assert _span_names(spans).count("dspex.restart") == 1
    assert (await predict.info()).demos == 1  # the restarted actor kept its demos


@pytest.mark.parametrize(
    "config",
    [Config(adaptive={"explore_rate": 0.0}, circuit={"crash_threshold": 2, "cooldown": 3600})],
)
async def test_after_k_actor_crashes_its_supervisor_restarts_it_on_dspy(rt: Runtime) -> None:
    predict = await dspex.Predict.create("question -> answer")
    await predict.execute({"question": "q"}, implementation="dspy")  # DSPy and LiteLLM loaded
    inject_faults(rt, crash_actor_on={1, 2})
    with pytest.raises(ActorExited):  # crashed the actor, and again when sent once more
        await predict(question="q")
    info = await predict.info()
    assert info.forced == "dspy"  # restarted from the fallback spec: it serves on dspy
    assert (await predict(question="q")).implementation == "dspy"
    await assert_restarted(rt, "Predict", 2)


@pytest.mark.parametrize(
    "config",
    [Config(adaptive={"explore_rate": 0.0}, circuit={"crash_threshold": 2, "cooldown": 1.5})],
)
async def test_repeated_crashes_open_the_circuit_until_a_probe_succeeds(rt: Runtime) -> None:
    faulty = inject_faults(rt, crash_rate=1.0)
    predict = await dspex.Predict.create("question -> answer")
    await predict.execute({"question": "q"}, implementation="dspy")  # DSPy and LiteLLM loaded
    for _ in range(2):  # each call crashes native once and is re-run on dspy
        served = await predict(question="q")
        assert (served.implementation, served.fallback) == ("dspy", True)
    assert (await rt.metrics()).circuits == {"Predict": "open"}  # the router counted 2
    served = await predict(question="q")
    assert served.implementation == "dspy"
    assert not served.fallback  # routed there: the native circuit is open
    assert (await predict.info()).circuit == "open"
    assert faulty.calls == 2  # native was not tried
    faulty.remove()  # native is healthy again
    await asyncio.sleep(1.55)  # the cool-down is wall-clock time; nothing to await instead
    probe = await predict(question="q")
    assert (probe.implementation, probe.fallback) == ("native", False)
    assert faulty.calls == 2  # the probe ran on the real backend
    assert (await rt.metrics()).circuits == {}
    assert (await predict(question="q")).implementation == "native"
    await assert_restarted(rt, "Predict", 0)  # no actor crashed on the way


@pytest.mark.parametrize(
    "config",
    # a cool-down longer than a dspy call takes in a worker on a loaded machine
    [Config(adaptive={"explore_rate": 0.0}, circuit={"crash_threshold": 1, "cooldown": 1.5})],
)
async def test_a_failing_probe_opens_the_circuit_again(rt: Runtime) -> None:
    inject_faults(rt, crash_on={1}, fail_on={2})
    predict = await dspex.Predict.create("question -> answer")
    await predict.execute({"question": "q"}, implementation="dspy")  # DSPy and LiteLLM loaded
    served = await predict(question="q")  # crash 1 opens the circuit; the call runs on dspy
    assert served.implementation == "dspy"
    assert (await rt.metrics()).circuits == {"Predict": "open"}
    await asyncio.sleep(1.55)  # the cool-down
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
    assert (native.failures, native.fallbacks, native.crashes) == (1, 1, 0)
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
