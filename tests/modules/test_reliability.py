"""Deadlines, overload, shutdown with calls in flight, cancellation and secrets."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import traceback

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import Config
from dspex.errors import LMError, LMTimeout, Overloaded, Timeout, Unavailable
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing import Hang, RecordedRequest, Reply, ScriptedLM, Status
from tests.modules.conftest import ANSWER, lm_of


def slow(seconds: float) -> object:
    def script(request: RecordedRequest) -> Reply:
        return Reply(ANSWER(request).text, latency=seconds)

    return script


async def settled(module: dspex.ModuleRef) -> int:
    """The module's calls in flight once the event loop had a moment to run cancellations."""
    for _ in range(100):
        info = await module.info()
        if info.in_flight == 0:
            return 0
        await asyncio.sleep(0.01)
    return info.in_flight


async def test_a_deadline_cancels_the_work_and_the_actor_keeps_serving(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = Hang()
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(Timeout, match=r"Predict call timed out after 0\.2 s"):
        await predict.execute({"question": "q"}, timeout=0.2)
    assert await settled(predict) == 0  # the task, LM request included, was cancelled
    server.script = ANSWER
    assert (await predict(question="q")).answer == "Paris"


@pytest.mark.parametrize("implementation", ["native", "dspy"])
async def test_an_lm_timeout_is_an_lm_timeout_and_the_deadline_a_timeout(
    server: ScriptedLM, implementation: str
) -> None:
    server.script = Hang()
    lm = LM("openai/scripted", api_base=server.base_url, api_key="k", timeout=0.3, num_retries=0)
    async with Runtime(lm=lm, config=_errors_of(implementation)):
        predict = await dspex.Predict.create("question -> answer")
        # No deadline of its own (Config() has no call_timeout): the LM's timeout cuts it.
        with pytest.raises(LMTimeout, match="did not answer within") as lm_late:
            await predict(question="q")
        # A deadline shorter than the LM's timeout: the call's own Timeout, saying so.
        with pytest.raises(Timeout) as call_late:
            await predict.execute({"question": "q"}, timeout=0.1)
    assert "timed out after" not in str(lm_late.value)
    assert not isinstance(call_late.value, LMTimeout)
    assert str(call_late.value) == (
        "Predict call timed out after 0.1 s (its deadline: execute(timeout=) or "
        "Config.call_timeout); its work, LM request included, was cancelled"
    )


async def test_metrics_after_stop_are_the_final_report(server: ScriptedLM) -> None:
    rt = Runtime(lm=lm_of(server), config=Config(adaptive={"explore_rate": 0.0}))
    async with rt:
        predict = await dspex.Predict.create("question -> answer")
        for _ in range(3):
            await predict(question="q")
        running = await rt.metrics()
    final = await rt.metrics()  # the router is gone: the report it left when it stopped
    assert final == running
    assert final.modules["Predict"]["native"].calls == 3
    async with rt:  # a new run starts from a clean slate
        assert (await rt.metrics()).modules == {}


@pytest.mark.parametrize("config", [Config(call_timeout=0.2, adaptive={"explore_rate": 0.0})])
async def test_the_runtime_default_deadline_applies(rt: Runtime, server: ScriptedLM) -> None:
    server.script = Hang()
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(Timeout):
        await predict(question="q")
    assert isinstance(Timeout("x"), TimeoutError)


@pytest.mark.parametrize(
    "config", [Config(max_concurrency=2, mailbox_size=2, adaptive={"explore_rate": 0.0})]
)
@pytest.mark.parametrize("burst", [True, False])
async def test_overload_fails_fast_beyond_the_limits(
    rt: Runtime, server: ScriptedLM, burst: bool
) -> None:
    server.script = slow(0.3)
    predict = await dspex.Predict.create("question -> answer")
    calls = []
    for i in range(6):  # all at once, or one at a time: the actor takes each as far as it can
        calls.append(asyncio.ensure_future(predict(question=f"q{i}")))
        if not burst:
            await asyncio.sleep(0.02)
    results = await asyncio.gather(*calls, return_exceptions=True)
    served = [r for r in results if isinstance(r, dspex.Prediction)]
    refused = [r for r in results if isinstance(r, Overloaded)]
    # max_concurrency running and mailbox_size waiting were accepted; the rest refused at once
    assert (len(served), len(refused)) == (4, 2)
    assert {str(r) for r in refused} == {
        "Predict module 'dspex.module.Predict.1' is overloaded: 2 calls running "
        "(max_concurrency) and 2 waiting (mailbox_size), so it takes no more now; retry later, "
        "raise those limits, or set Config(overload='wait') to wait for room within the "
        "call's deadline"
    }
    assert (await predict(question="again")).answer == "Paris"


@pytest.mark.parametrize(
    "config",
    [Config(max_concurrency=1, mailbox_size=1, overload="wait", adaptive={"explore_rate": 0.0})],
)
async def test_overload_can_wait_for_room_within_the_deadline(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = slow(0.1)
    predict = await dspex.Predict.create("question -> answer")
    results = await asyncio.gather(*(predict(question=f"q{i}") for i in range(6)))
    assert [r.answer for r in results] == ["Paris"] * 6
    server.script = slow(0.3)
    late = await asyncio.gather(
        *(predict.execute({"question": f"late {i}"}, timeout=0.5) for i in range(6)),
        return_exceptions=True,
    )
    assert {type(r) for r in late} == {dspex.Prediction, Timeout}  # none waits past its deadline


async def test_memory_stays_bounded_under_a_flood() -> None:
    config = Config(max_concurrency=4, mailbox_size=8, adaptive={"explore_rate": 0.0})
    async with ScriptedLM(slow(0.2)) as server, Runtime(lm=lm_of(server), config=config) as rt:
        predict = await dspex.Predict.create("question -> answer")
        calls = [asyncio.ensure_future(predict(question="q")) for _ in range(10 * 13)]
        await asyncio.sleep(0.05)
        proc = predict.actor._proc
        assert len(proc.mailbox) + len(proc.blocked) <= 4 + 8  # bounded whatever the flood
        results = await asyncio.gather(*calls, return_exceptions=True)
        served = sum(isinstance(r, dspex.Prediction) for r in results)
        assert served == 4 + 8  # what was accepted (4 running, 8 waiting) was served...
        assert all(
            isinstance(r, (dspex.Prediction, Overloaded)) for r in results
        )  # ...the rest refused
        assert rt.state == "running"


async def test_shutdown_drains_calls_in_flight_and_refuses_new_ones() -> None:
    before = {t.name for t in threading.enumerate()}
    async with ScriptedLM(slow(0.2)) as server:
        rt = Runtime(lm=lm_of(server), config=Config(adaptive={"explore_rate": 0.0}))
        await rt.__aenter__()
        predict = await dspex.Predict.create("question -> answer")
        reference = await dspex.Predict.create("question -> answer", implementation="dspy")
        await reference(question="warm up")  # DSPy's worker threads exist now
        calls = [asyncio.ensure_future(predict(question=f"q{i}")) for i in range(5)]
        calls.append(asyncio.ensure_future(reference(question="q")))
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(rt.shutdown())
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="draining"):
            await predict(question="too late")
        await stopping
        results = await asyncio.gather(*calls)
        assert [r.answer for r in results] == ["Paris"] * 6  # every accepted call finished
        with pytest.raises(Unavailable, match="stopped"):
            await predict(question="after")
    left = {t.name for t in threading.enumerate()} - before
    assert not [name for name in left if name.startswith("dspex")]


async def test_drain_timeout_then_calls_in_flight_get_a_clear_error() -> None:
    config = Config(drain_timeout=0.1, adaptive={"explore_rate": 0.0})
    async with ScriptedLM(Hang()) as server:
        rt = Runtime(lm=lm_of(server), config=config)
        await rt.__aenter__()
        predict = await dspex.Predict.create("question -> answer")
        call = asyncio.ensure_future(predict(question="q"))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(rt.shutdown(), 5)
        with pytest.raises(Unavailable) as info:
            await call
    assert str(info.value) == (
        "the runtime stopped: this Predict call was still running after drain_timeout "
        "(0.1 s) and was cancelled"
    )


async def test_forced_shutdown_cancels_at_once() -> None:
    async with ScriptedLM(Hang()) as server:
        rt = Runtime(lm=lm_of(server))
        await rt.__aenter__()
        predict = await dspex.Predict.create("question -> answer")
        call = asyncio.ensure_future(predict(question="q"))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(rt.shutdown(force=True), 1)
        with pytest.raises(Unavailable, match="cancelled by a forced shutdown"):
            await call


async def test_signals_drain_then_force() -> None:
    async with ScriptedLM(slow(0.2)) as server:
        rt = Runtime(lm=lm_of(server), config=Config(adaptive={"explore_rate": 0.0}))
        await rt.__aenter__()
        stopped = rt.stop_on_signals()
        predict = await dspex.Predict.create("question -> answer")
        call = asyncio.ensure_future(predict(question="q"))
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopped.wait(), 5)
        assert (await call).answer == "Paris"  # drained, not cancelled
        assert rt.state == "stopped"
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().remove_signal_handler(sig)


async def test_a_cancelled_caller_cancels_only_its_own_work(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = slow(0.5)
    predict = await dspex.Predict.create("question -> answer")
    mine = asyncio.ensure_future(predict(question="mine"))
    other = asyncio.ensure_future(predict(question="other"))
    await asyncio.sleep(0.1)
    mine.cancel()
    with pytest.raises(asyncio.CancelledError):
        await mine
    info = await predict.info()
    assert info.in_flight == 1  # only the other call still runs
    assert (await other).answer == "Paris"


SECRET = "sk-secret-test-key"  # the key conftest's LM uses


async def test_the_api_key_never_leaks(
    rt: Runtime,
    server: ScriptedLM,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    predict = await dspex.Predict.create("question -> answer")
    await predict(question="q")
    server.script = Status(401, message=f"Incorrect API key provided: {SECRET}")
    with pytest.raises(LMError) as info:
        await predict(question="q2")  # not q: the response cache would answer it
    with pytest.raises(LMError) as on_dspy:
        await predict.execute({"question": "q3"}, implementation="dspy")
    texts = [
        repr(rt),
        repr(rt.lm),
        str(rt.lm),
        repr(predict),
        repr(await predict.info()),
        str(info.value),
        repr(info.value),
        str(info.value.__cause__),
        str(info.value.__context__),
        *(record.getMessage() for record in caplog.records),
        *(str(record.exc_info) for record in caplog.records),
        *(str(dict(s.attributes or {})) for s in spans.get_finished_spans()),
        *(str(e.attributes) for s in spans.get_finished_spans() for e in s.events),
        *traceback.format_exception(info.value),  # the whole chain, causes and contexts
        *traceback.format_exception(on_dspy.value),
        repr(await rt.metrics()),
    ]
    assert all(SECRET not in text for text in texts), [t for t in texts if SECRET in t]
    assert "***" in str(info.value)  # masked where the server echoed it
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was used


def _errors_of(implementation: str) -> Config:
    return Config(allow_fallback=False, module_overrides={"Predict": implementation})  # type: ignore[dict-item]


@pytest.mark.parametrize("implementation", ["native", "dspy"])
@pytest.mark.parametrize("key", ["test", "k", "local", "sk-x"])
async def test_a_placeholder_key_shorter_than_8_characters_masks_nothing(
    server: ScriptedLM, key: str, implementation: str
) -> None:
    message = "the latest request from localhost was rejected: check the key (not sk-x)"
    server.script = Status(401, message=message)
    lm = LM("openai/scripted", api_base=server.base_url, api_key=key, num_retries=0)
    async with Runtime(lm=lm, config=_errors_of(implementation)):
        predict = await dspex.Predict.create("question -> answer")
        with pytest.raises(LMError) as info:
            await predict(question="q")
    assert message in str(info.value)
    assert "***" not in "".join(traceback.format_exception(info.value))
    if implementation == "dspy":
        assert info.value.__cause__ is not None  # LiteLLM's error stays chained


@pytest.mark.parametrize("implementation", ["native", "dspy"])
async def test_a_key_read_from_the_environment_is_masked_too(
    server: ScriptedLM, implementation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = Status(401, message=f"Incorrect API key provided: {SECRET}")
    lm = LM("openai/scripted", api_base=server.base_url, num_retries=0)  # no api_key
    async with Runtime(lm=lm, config=_errors_of(implementation)):
        predict = await dspex.Predict.create("question -> answer")
        with pytest.raises(LMError) as info:
            await predict(question="q")
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert "Incorrect API key provided: ***" in str(info.value)
    assert SECRET not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize(("key", "masked"), [(SECRET, True), ("test", False)])
async def test_shadow_divergences_keep_no_real_key_and_mangle_no_text(
    server: ScriptedLM, key: str, masked: bool
) -> None:
    question = f"the latest request used {key}"
    answers = iter(["Paris", f"Lyon, said {key}"])

    def script(request: RecordedRequest) -> Reply:
        return Reply(str(ANSWER(request).text).replace("Paris", next(answers)))

    server.script = script
    config = Config(shadow={"Predict": {"rate": 1.0}}, adaptive={"explore_rate": 0.0})  # type: ignore[arg-type]
    lm = LM("openai/scripted", api_base=server.base_url, api_key=key)
    async with Runtime(lm=lm, config=config) as rt:
        predict = await dspex.Predict.create("question -> answer")
        assert (await predict(question=question)).answer == "Paris"
        for _ in range(500):  # the shadow call finishes in the background
            report = await rt.metrics()
            if "Predict" in report.shadow:
                break
            await asyncio.sleep(0.01)
    (divergence,) = report.shadow["Predict"].divergences
    shown = "***" if masked else key
    assert divergence.inputs == {"question": f"the latest request used {shown}"}
    assert divergence.shadow_output == {"answer": f"Lyon, said {shown}"}


async def test_a_second_signal_forces_the_shutdown() -> None:
    async with ScriptedLM(Hang()) as server:
        rt = Runtime(lm=lm_of(server), config=Config(drain_timeout=60))
        await rt.__aenter__()
        stopped = rt.stop_on_signals()
        predict = await dspex.Predict.create("question -> answer")
        call = asyncio.ensure_future(predict(question="q"))
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.1)
        assert rt.state == "draining"  # waiting for the hung call, up to drain_timeout
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopped.wait(), 5)
        with pytest.raises(Unavailable, match="cancelled by a forced shutdown"):
            await call
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().remove_signal_handler(sig)


async def test_dspy_calls_leave_nothing_in_dspys_process_wide_trace_or_history(
    rt: Runtime,
) -> None:
    import dspy
    from dspy.clients.base_lm import GLOBAL_HISTORY

    trace, history = len(dspy.settings.trace), len(GLOBAL_HISTORY)
    predict = await dspex.Predict.create("question -> answer")
    best = await dspex.BestOfN.create(
        "question -> answer", N=2, reward_fn=lambda args, pred: 1.0, threshold=1.0
    )
    for _ in range(3):
        assert (await predict.execute({"question": "q"}, implementation="dspy")).answer == "Paris"
    # BestOfN reads and extends the trace of the call it runs in: each call has its own.
    assert (await best.execute({"question": "q"}, implementation="dspy")).answer == "Paris"
    # DSPy would keep the last 10,000 predictions, their inputs and LM calls: a service's leak.
    assert (len(dspy.settings.trace), len(GLOBAL_HISTORY)) == (trace, history)


@pytest.mark.parametrize(
    "config", [Config(max_concurrency=1, mailbox_size=1, adaptive={"explore_rate": 0.0})]
)
async def test_info_and_set_demos_beyond_the_mailbox_are_overloaded(
    rt: Runtime, server: ScriptedLM
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    # sent in one go, more requests than the module's mailbox holds (max_concurrency +
    # mailbox_size): the ones past it are refused at once, in dspex's words
    results = await asyncio.gather(*(predict.info() for _ in range(8)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused
    assert all(isinstance(r, Overloaded) for r in refused), refused
    assert all("overloaded" in str(r) and "ActorRef" not in str(r) for r in refused)
    demos = [{"question": "q", "answer": "a"}]
    results = await asyncio.gather(
        *(predict.set_demos(demos) for _ in range(8)), return_exceptions=True
    )
    assert all(isinstance(r, Overloaded) for r in results if isinstance(r, BaseException))
    assert (await predict.info()).demos == 1
