"""What a wrapped program shows: one ``dspex.program`` span per call holding its predictors'
route spans, metrics per program and per predictor, ``info()`` per predictor, and the
prediction's ``implementation`` and ``served_by``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import dspy
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.modules import ProgramRef
from dspex.runtime import Runtime
from dspex.testing import Reply, ScriptedLM, inject_faults, respond
from tests.modules import corpus

ANSWERS = respond(answer="Paris", reasoning="Known.")


class AsyncDraftRefine(dspy.Module):
    """DraftRefine with an ``aforward``: its predictor calls are awaited on the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.ChainOfThought("question -> answer")
        self.refine = dspy.Predict("question, draft -> answer")

    async def aforward(self, question: str) -> Any:
        draft = await self.draft.acall(question=question)
        return await self.refine.acall(question=question, draft=draft.answer)


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def wrap_draft_refine(sync: bool) -> ProgramRef:
    ref = await dspex.Module.wrap(corpus.DraftRefine() if sync else AsyncDraftRefine(), name="qa")
    assert isinstance(ref, ProgramRef)
    return ref


async def test_each_call_has_a_program_span_holding_its_predictors_route_spans(
    rt: Runtime, server: ScriptedLM, spans: InMemorySpanExporter
) -> None:
    server.script = ANSWERS
    for sync in (True, False):
        spans.clear()
        ref = await wrap_draft_refine(sync)
        # concurrent calls: each program span holds its own predictor calls, no one else's
        await asyncio.gather(*(ref(question=f"q{i}") for i in range(3)))
        finished = spans.get_finished_spans()
        programs = [s for s in finished if s.name == "dspex.program"]
        assert len(programs) == 3
        routes = [s for s in finished if s.name == "dspex.route"]
        for program in programs:
            assert attributes(program)["dspex.operation"] == "qa"
            assert attributes(program)["dspex.implementation"] == "native"
            inside = [
                r
                for r in routes
                if r.parent is not None and r.parent.span_id == program.context.span_id
            ]
            assert sorted(attributes(r)["dspex.operation"] for r in inside) == [
                "qa.draft.predict",
                "qa.refine",
            ]
            assert {r.context.trace_id for r in inside} == {program.context.trace_id}
        # and each program span is inside the route span of the program's own call
        program_routes = [r for r in routes if attributes(r)["dspex.operation"] == "qa"]
        assert len(program_routes) == 3
        assert {p.context.trace_id for p in programs} == {
            r.context.trace_id for r in program_routes
        }
        await ref.stop()


async def test_metrics_report_the_program_and_each_predictor(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    ref = await wrap_draft_refine(sync=True)
    for _ in range(2):
        await ref(question="q")
    report = (await rt.metrics()).modules
    assert report["qa"]["dspy"].calls == 2  # the program's own code runs on dspy
    assert report["qa.draft.predict"]["native"].calls == 2
    assert report["qa.refine"]["native"].calls == 2


async def test_info_lists_each_predictor(rt: Runtime, server: ScriptedLM) -> None:
    program = corpus.DraftRefine()
    program.refine.config["rollout_id"] = 3  # an LM setting native does not send: on dspy
    program.draft.predict.demos = [dspy.Example(question="Capital of Peru?", answer="Lima")]
    ref = await dspex.Module.wrap(program, name="qa")
    assert isinstance(ref, ProgramRef)
    info = await ref.info()
    assert info.module_type == "Module"
    assert info.demos == 1
    draft, refine = info.predictors
    assert (draft.path, draft.module_type, draft.name) == (
        "draft.predict",
        "ChainOfThought",
        "qa.draft.predict",
    )
    assert set(draft.implementations) == {"native", "dspy"}
    assert (draft.demos, draft.circuit, draft.native_unsupported) == (1, "closed", None)
    assert (refine.path, refine.module_type, refine.implementations) == (
        "refine",
        "Predict",
        ("dspy",),
    )
    assert refine.native_unsupported is not None
    assert "rollout_id" in refine.native_unsupported
    await ref.set_demos([{"question": "q", "draft": "d", "answer": "a"}], predictor="refine")
    assert [p.demos for p in (await ref.info()).predictors] == [1, 1]
    # set on a predictor's own handle: its actor owns its demos, info() reads them there
    await ref.predictors["draft.predict"].set_demos([])
    info = await ref.info()
    assert [p.demos for p in info.predictors] == [0, 1]
    assert info.demos == 1
    plain = json.loads(json.dumps((await ref.info()).to_dict()))
    assert [p["path"] for p in plain["predictors"]] == ["draft.predict", "refine"]


async def test_a_predictor_dspy_runs_inside_the_program(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS

    class Custom(dspy.Predict):
        """A Predict subclass: DSPy runs it inside the program (native serves exact types)."""

    class Program(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ask = dspy.Predict("question -> answer")
            self.custom = Custom("question -> answer")

        def forward(self, question: str) -> Any:
            self.custom(question=question)
            return self.ask(question=question)

    ref = await dspex.Module.wrap(Program(), name="qa")
    assert isinstance(ref, ProgramRef)
    ask, custom = (await ref.info()).predictors
    assert (ask.path, ask.name) == ("ask", "qa.ask")
    assert (custom.path, custom.module_type, custom.name) == ("custom", "Custom", None)
    assert (custom.implementations, custom.circuit) == (("dspy",), None)
    assert custom.native_unsupported is not None
    assert "dspex serves sub-modules of the exact types" in custom.native_unsupported
    assert "this Custom is not" in custom.native_unsupported
    pred = await ref(question="q")  # it ran on DSPy, the other natively: the program is mixed
    assert pred.served_by == {"ask": "native", "custom": "dspy"}
    assert pred.implementation == "mixed"


async def test_served_by_names_each_predictor_that_ran(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS
    ref = await wrap_draft_refine(sync=True)
    pred = await ref(question="q")
    assert pred.implementation == "native"
    assert pred.served_by == {"draft.predict": "native", "refine": "native"}
    assert not pred.fallback
    assert pred.usage  # the predictors' token counts, summed


async def test_a_program_served_by_both_is_mixed(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS
    program = corpus.DraftRefine()
    program.refine.config["rollout_id"] = 3  # refine on dspy
    ref = await dspex.Module.wrap(program, name="qa")
    pred = await ref(question="q")
    assert pred.implementation == "mixed"
    assert pred.served_by == {"draft.predict": "native", "refine": "dspy"}


async def test_a_predictor_served_by_both_within_one_call_is_mixed(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    ref = await dspex.Module.wrap(corpus.Hops(), name="qa")  # one Predict called 3 times
    with inject_faults(rt, crash_on=[2]):  # its second call crashes natively: dspy answers
        pred = await ref(question="q")
    assert pred.served_by == {"step": "mixed"}
    assert pred.implementation == "mixed"
    assert pred.fallback
    assert pred.fallback_reason is not None
    assert pred.fallback_reason.startswith("step: NativeCrash")
    again = await ref(question="q")
    assert (again.served_by, again.implementation) == ({"step": "native"}, "native")


class Branch(dspy.Module):
    """Calls ``a`` (native) or ``b`` (on dspy) depending on the question (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = dspy.Predict("question -> answer")
        self.b = dspy.Predict("question -> answer")
        self.b.config["rollout_id"] = 1  # native does not send it: b is served on dspy

    def forward(self, question: str) -> Any:
        return (self.a if question.startswith("a") else self.b)(question=question)


class AsyncBranch(Branch):
    """Branch with an ``aforward``."""

    async def aforward(self, question: str) -> Any:
        return await (self.a if question.startswith("a") else self.b).acall(question=question)


async def test_concurrent_calls_never_mix_their_records(rt: Runtime, server: ScriptedLM) -> None:
    server.script = Reply("[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]", latency=0.02)
    for program in (Branch(), AsyncBranch()):
        ref = await dspex.Module.wrap(program, name="branch")
        questions = [("a" if i % 2 else "b") + str(i) for i in range(24)]
        preds = await asyncio.gather(*(ref(question=q) for q in questions))
        for question, pred in zip(questions, preds, strict=True):
            expected = {"a": "native"} if question.startswith("a") else {"b": "dspy"}
            assert pred.served_by == expected, question
            assert pred.implementation == next(iter(expected.values()))
        await ref.stop()


async def test_a_program_wrapped_whole_on_dspy_has_no_served_by(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    ref = await dspex.Module.wrap(corpus.DraftRefine(), implementation="dspy")
    pred = await ref(question="q")
    assert (pred.implementation, pred.served_by) == ("dspy", {})


async def test_shadow_comparison_covers_a_programs_predictors(server: ScriptedLM) -> None:
    """Shadow settings are per module type: a program's Predict is shadowed on dspy like any
    Predict, and its comparisons are reported under the type."""
    server.script = ANSWERS
    config = dspex.Config(shadow={"Predict": {"rate": 1.0}}, adaptive={"explore_rate": 0.0})
    lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
    async with Runtime(lm=lm, config=config) as rt:
        ref = await dspex.Module.wrap(corpus.DraftRefine(), name="qa")
        pred = await ref(question="What is the capital of France?")
        assert pred.served_by["refine"] == "native"
        for _ in range(200):  # the shadow run is in the background: wait for its report
            shadow = (await rt.metrics()).shadow.get("Predict")
            if shadow is not None and shadow.calls:
                break
            await asyncio.sleep(0.01)
        assert shadow is not None
        assert shadow.calls == 1
        assert shadow.agreement_rate == 1.0
