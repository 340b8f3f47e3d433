"""Failure in a wrapped program is per predictor: one falls back alone, one native cannot serve
runs on dspy, the program's own exception is its call's alone, and the call's deadline (or its
caller giving up) ends every predictor call in flight, a sync ``forward``'s thread included."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import dspy
import pytest
from dspy.experimental import Noul

import dspex
from dspex.config import Config
from dspex.errors import ModuleError, Timeout
from dspex.modules import ProgramInfo, ProgramRef
from dspex.runtime import Runtime
from dspex.testing import Hang, RecordedRequest, Reply, ScriptedLM, inject_faults, respond
from dspex.testing._respond import requested_outputs
from tests.modules import corpus
from tests.modules.conftest import lm_of

ANSWERS = respond(answer="Paris", reasoning="Known.", caption="A cat.", safe={"noul": 0.9})


@pytest.fixture
async def rt(server: ScriptedLM) -> AsyncIterator[Runtime]:
    """No native retries: a bad reply is tried once natively, then once on dspy."""
    lm = lm_of(server)
    async with Runtime(lm=lm, config=Config(adaptive={"explore_rate": 0.0})) as runtime:
        yield runtime


async def test_a_predictor_whose_native_attempt_crashes_falls_back_alone(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    ref = await dspex.Module.wrap(corpus.DraftRefine(), name="qa")
    await ref(question="warm up")  # both predictors' first native calls
    with inject_faults(rt, crash_on=[1], module_types=["Predict"]):  # refine's next call
        pred = await ref(question="q")
    assert pred.answer == "Paris"
    assert pred.served_by == {"draft.predict": "native", "refine": "dspy"}
    assert pred.implementation == "mixed"
    assert pred.fallback
    assert pred.fallback_reason is not None
    assert pred.fallback_reason.startswith("refine: NativeCrash")
    report = (await rt.metrics()).modules
    assert report["qa.refine"]["native"].fallbacks == 1
    assert set(report["qa.draft.predict"]) == {"native"}
    assert report["qa.draft.predict"]["native"].fallbacks == 0


async def test_a_reply_native_cannot_parse_falls_back_for_that_predictor_only(
    rt: Runtime, server: ScriptedLM
) -> None:
    bad = {"left": 2}  # native's request and its JSON retry; dspy then gets good replies

    def script(request: RecordedRequest) -> Reply:
        names, _ = requested_outputs(request)
        if "reasoning" not in names and bad["left"]:  # refine's, not the draft's
            bad["left"] -= 1
            return Reply("no idea")
        return ANSWERS(request)

    server.script = script
    ref = await dspex.Module.wrap(corpus.DraftRefine(), name="qa")
    pred = await ref(question="q")
    assert pred.served_by == {"draft.predict": "native", "refine": "dspy"}
    assert pred.fallback_reason is not None
    assert pred.fallback_reason.startswith("refine: ParseError")
    assert bad["left"] == 0
    again = await ref(question="q")  # the rest of the program never left native
    assert (again.implementation, again.fallback) == ("native", False)


class Describe(dspy.Signature):
    """Describe the photo; say whether it is safe to show."""

    photo: dspy.Image = dspy.InputField()
    caption: str = dspy.OutputField()
    safe: Noul = dspy.OutputField(desc="whether the photo is safe to show")


class Captioned(dspy.Module):
    """A predictor with a Noul output (a DSPy decision type native lacks) and one without."""

    def __init__(self) -> None:
        super().__init__()
        self.describe = dspy.Predict(Describe)
        self.answer = dspy.Predict("question, caption -> answer")

    def forward(self, photo: Any, question: str) -> Any:
        caption = self.describe(photo=photo).caption
        return self.answer(question=question, caption=caption)


async def test_a_predictor_with_a_type_native_lacks_runs_on_dspy_and_info_says_why(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    ref = await dspex.Module.wrap(Captioned(), name="vision")
    assert isinstance(ref, ProgramRef)
    describe, answer = (await ref.info()).predictors
    assert (describe.path, describe.implementations) == ("describe", ("dspy",))
    assert describe.native_unsupported is not None
    assert "uses Noul, a dspy.Type" in describe.native_unsupported
    assert (answer.native_unsupported, "native" in answer.implementations) == (None, True)
    photo = dspy.Image("https://example.com/cat.png")
    pred = await ref(photo=photo, question="What is it?")
    assert pred.answer == "Paris"
    assert pred.served_by == {"describe": "dspy", "answer": "native"}
    assert not pred.fallback  # not a fallback: native was never tried


class Fragile(dspy.Module):
    """Raises after its predictor answered, when asked to."""

    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        pred = self.predict(question=question)
        if question == "boom":
            raise ValueError(f"cannot use {pred.answer!r}")
        return pred


async def test_a_program_whose_code_raises_fails_that_call_alone(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    other = await dspex.Module.wrap(corpus.DraftRefine(), name="other")
    ref = await dspex.Module.wrap(Fragile(), name="fragile")
    with pytest.raises(ModuleError) as info:
        await ref(question="boom")
    message = str(info.value)
    assert "'fragile'" in message
    assert "ValueError: cannot use 'Paris'" in message
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert str(cause) == "cannot use 'Paris'"
    # nothing else is harmed: the program, its predictor and another program answer
    assert (await ref(question="fine")).answer == "Paris"
    assert (await other(question="q")).answer == "Paris"
    assert ref.actor.alive
    assert (await rt.metrics()).restarts == {}


class Gated(dspy.Module):
    """A sync program that records what its thread did: it calls ``first``, waits for
    ``gate`` (if set), then calls ``second``; ``done`` is set when its thread ends."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.first = dspy.Predict("question -> answer")
        self.second = dspy.Predict("question, answer -> verdict")
        self.gate = gate
        self.log: list[str] = []
        self.reached = threading.Event()
        self.done = threading.Event()

    def forward(self, question: str) -> Any:
        try:
            try:
                answer = self.first(question=question).answer
                self.log.append("first answered")
                self.reached.set()
                if self.gate is not None:
                    self.gate.wait()
                pred = self.second(question=question, answer=answer)
            except BaseException as exc:
                self.log.append(type(exc).__name__)
                raise
            self.log.append("after second")  # must not run once the call is over
            return pred
        finally:
            self.done.set()


async def gated(program: Gated) -> ProgramRef:
    """Wrap ``program`` from a factory returning that very object, so the test reads its log
    (an instance would be copied)."""
    ref = await dspex.Module.wrap(lambda: program, name="gated")
    assert isinstance(ref, ProgramRef)
    return ref


async def wait_until(event: threading.Event) -> bool:
    """Wait for ``event`` from a thread without blocking the loop (bounded: a thread left
    running makes the test fail rather than hang)."""
    return await asyncio.to_thread(event.wait, 10)


async def test_a_thread_past_its_deadline_gets_timeout_at_its_next_predictor_call(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    gate = threading.Event()
    program = Gated(gate)
    ref = await gated(program)
    call = asyncio.ensure_future(ref.execute({"question": "q"}, timeout=0.5))
    assert await wait_until(program.reached)
    with pytest.raises(Timeout):
        await call
    sent = len(server.requests)
    gate.set()  # the thread goes on, past its call's end
    assert await wait_until(program.done)
    assert program.log == ["first answered", "Timeout"]
    assert len(server.requests) == sent  # `second` sent nothing


async def test_a_thread_whose_caller_gave_up_gets_timeout_at_its_next_predictor_call(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    gate = threading.Event()
    program = Gated(gate)
    ref = await gated(program)
    call = asyncio.ensure_future(ref(question="q"))  # no deadline at all
    assert await wait_until(program.reached)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    sent = len(server.requests)
    gate.set()
    assert await wait_until(program.done)
    assert program.log == ["first answered", "Timeout"]
    assert len(server.requests) == sent


async def test_the_deadline_cancels_a_predictor_call_in_flight_and_its_thread_ends(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = Hang()  # the LM never answers
    program = Gated()
    ref = await gated(program)
    with pytest.raises(Timeout):
        await ref.execute({"question": "q"}, timeout=0.5)
    assert await wait_until(program.done)
    assert program.log == ["Timeout"]
    assert (await ref.predictors["first"].info()).in_flight == 0


async def test_a_caller_giving_up_cancels_the_predictor_call_in_flight(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = Hang()
    program = Gated()
    ref = await gated(program)
    call = asyncio.ensure_future(ref(question="q"))  # no deadline: only the cancel ends it
    await asyncio.wait_for(server.wait_for_requests(1), 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await wait_until(program.done)  # not left waiting on the LM forever
    assert program.log == ["Timeout"]
    assert (await ref.predictors["first"].info()).in_flight == 0


async def idle(ref: dspex.modules.ModuleRef) -> None:
    """Until ``ref`` runs no call: a cancel reaches its actor's task through the loop, and
    nothing signals its end but the actor's own count."""
    while (await ref.info()).in_flight:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


class AsyncGated(dspy.Module):
    """An aforward calling one predictor; records whether code after it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.first = dspy.Predict("question -> answer")
        self.log: list[str] = []
        self.ended = asyncio.Event()

    async def aforward(self, question: str) -> Any:
        try:
            pred = await self.first.acall(question=question)
        except BaseException as exc:
            self.log.append(type(exc).__name__)
            raise
        finally:
            self.ended.set()
        self.log.append("after first")
        return pred


async def test_an_aforwards_predictor_call_in_flight_is_cancelled_with_the_call(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = Hang()
    program = AsyncGated()
    ref = await dspex.Module.wrap(lambda: program, name="agated")
    assert isinstance(ref, ProgramRef)
    call = asyncio.ensure_future(ref(question="q"))
    await asyncio.wait_for(server.wait_for_requests(1), 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(program.ended.wait(), 10)
    assert program.log == ["CancelledError"]
    await asyncio.wait_for(idle(ref.predictors["first"]), 10)
    with pytest.raises(Timeout):
        await ref.execute({"question": "q"}, timeout=0.3)  # the deadline covers it as well


async def test_a_predictors_circuit_is_its_own(rt: Runtime, server: ScriptedLM) -> None:
    """Crashes of one predictor open that predictor's circuit, which then routes its calls to
    dspy; the program's other predictor and a plain module of the same type stay native."""
    server.script = ANSWERS
    ref = await dspex.Module.wrap(corpus.DraftRefine(), name="qa")
    plain = await dspex.Predict.create("question -> answer")
    await ref(question="warm up")
    with inject_faults(rt, crash_rate=1.0, module_types=["Predict"]):  # every native Predict
        for _ in range(rt.config.circuit.crash_threshold):
            assert (await ref(question="q")).served_by["refine"] == "dspy"  # fell back
    assert (await rt.metrics()).circuits == {"qa.refine": "open"}
    pred = await ref(question="q")
    assert pred.served_by == {"draft.predict": "native", "refine": "dspy"}
    assert not pred.fallback  # routed to dspy by its open circuit, not a fallback
    assert (await plain(question="q")).implementation == "native"
    info = await ref.info()
    assert isinstance(info, ProgramInfo)
    circuits = {p.path: p.circuit for p in info.predictors}
    assert circuits == {"draft.predict": "closed", "refine": "open"}


async def test_a_programs_predictors_feed_their_types_rollout(
    rt: Runtime, server: ScriptedLM
) -> None:
    """A rollout is per module type: a program's Predict follows it, and its native failures
    roll the canary back like those of any Predict."""
    server.script = ANSWERS
    await rt.configure(
        rollout={"Predict": {"native_percent": 100, "min_calls": 5, "max_error_rate_increase": 0.2}}
    )
    ref = await dspex.Module.wrap(corpus.DraftRefine(), name="qa")
    with inject_faults(rt, fail_rate=1.0, seed=0, module_types=["Predict"]):
        for _ in range(40):  # refine's native attempts fail and fall back to dspy
            assert (await ref(question="q")).served_by["refine"] == "dspy"
            if rt.config.rollout["Predict"].native_percent == 0:
                break
    assert rt.config.rollout["Predict"].native_percent == 0
    assert "native error rate" in (await rt.metrics()).rollbacks["Predict"]
    pred = await ref(question="q")  # rolled back: refine now routed to dspy, draft native
    assert pred.served_by == {"draft.predict": "native", "refine": "dspy"}
    assert not pred.fallback
