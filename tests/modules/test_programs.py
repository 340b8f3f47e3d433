"""Module.wrap of real DSPy programs, proven differentially with DSPy 3.4.1 as the oracle: the
LM receives the same requests, in the same order, from ``await ref(**inputs)`` (each predictor
a native module actor) as from the plain DSPy program, and the outputs are equal."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import dspy
import pytest

import dspex
from dspex.errors import ConfigError
from dspex.modules._actor import GetDemos, SetDemos
from dspex.runtime import Runtime
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond
from dspex.testing._respond import requested_outputs
from tests.modules import corpus
from tests.modules.conftest import lm_of

ANSWERS = respond(
    answer="Paris",
    reasoning="The documents say so.",
    summary="A city.",
    title="Paris",
    verdict=True,
    city={"name": "Paris", "population": 2100000},
    confidence=0.9,
)


async def run_dspy(server: ScriptedLM, program: Any, inputs: Mapping[str, Any]) -> Any:
    """The oracle: the program in plain DSPy against the same LM endpoint. DSPy's ``acall``
    runs ``aforward`` only (a program with just a sync ``forward`` has none), so a sync
    program is called in a worker thread, as dspex runs it."""
    with dspy.context(lm=lm_of(server).to_dspy(), adapter=dspy.ChatAdapter()):
        if "aforward" in type(program).__dict__:
            return await program.acall(**inputs)
        return await asyncio.to_thread(program, **inputs)


def same_requests(ours: list[RecordedRequest], theirs: list[RecordedRequest]) -> None:
    assert len(ours) == len(theirs) > 0
    for mine, oracle in zip(ours, theirs, strict=True):
        assert mine.messages == oracle.messages
        assert mine.body == oracle.body
        assert mine.content == oracle.content  # byte for byte


async def served_as_dspy_serves(
    server: ScriptedLM, ref: dspex.ModuleRef, oracle: Any, calls: list[dict[str, Any]]
) -> list[dspex.Prediction]:
    """The same requests, byte for byte, and the same outputs from ``ref`` as from
    ``oracle`` in plain DSPy; dspex's predictions."""
    start = len(server.requests)
    # every call sends its requests (cache=False reaches each predictor): not the replies an
    # earlier identical call left in the response cache
    ours = [await ref.execute(inputs, cache=False) for inputs in calls]
    middle = len(server.requests)
    theirs = [await run_dspy(server, oracle, inputs) for inputs in calls]
    same_requests(server.requests[start:middle], server.requests[middle:])
    assert [p.to_dict() for p in ours] == [dict(p.items()) for p in theirs]
    return ours


async def differential(
    rt: Runtime,
    server: ScriptedLM,
    program: Any,
    calls: list[dict[str, Any]],
    predictors: list[str],
    actors: list[str] | None = None,
) -> list[dspex.Prediction]:
    """Wrap ``program``, run ``calls`` through dspex then through plain DSPy (the same object:
    wrap must not have changed it), and check requests and outputs; every one of
    ``predictors`` (paths) served natively, by the module actors at ``actors`` (paths; by
    default one per predictor)."""
    ref = await dspex.Module.wrap(program, name="qa")
    assert isinstance(ref, dspex.modules.ProgramRef)
    actors = predictors if actors is None else actors
    assert sorted(ref.predictors) == sorted(actors)
    ours = await served_as_dspy_serves(server, ref, program, calls)
    for pred in ours:  # every predictor ran, natively
        assert pred.served_by == dict.fromkeys(predictors, "native")
        assert pred.implementation == "native"
    report = (await rt.metrics()).modules
    for path in actors:
        assert set(report[f"qa.{path}"]) == {"native"}, path
        assert report[f"qa.{path}"]["native"].calls >= len(calls)
    return ours


def compile_draft_refine(server: ScriptedLM) -> corpus.DraftRefine:
    """DraftRefine compiled with BootstrapFewShot against the scripted LM: augmented demos
    (with reasoning) and labeled ones (without: incomplete for the ChainOfThought)."""
    trainset = [
        dspy.Example(question=f"Capital of {c}?", answer=a).with_inputs("question")
        for c, a in [("France", "Paris"), ("Italy", "Rome"), ("Peru", "Lima"), ("Chad", "N")]
    ]
    optimizer = dspy.BootstrapFewShot(
        metric=lambda example, pred, trace=None: True,
        max_bootstrapped_demos=2,
        max_labeled_demos=3,
    )
    with dspy.context(lm=lm_of(server).to_dspy(), adapter=dspy.ChatAdapter()):
        compiled: corpus.DraftRefine = optimizer.compile(corpus.DraftRefine(), trainset=trainset)
    return compiled


async def test_a_compiled_draft_refine_program(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS
    program = await asyncio.to_thread(compile_draft_refine, server)
    demos = program.draft.predict.demos
    assert any(d.get("augmented") for d in demos)  # bootstrapped, with reasoning
    assert any("reasoning" not in d for d in demos)  # labeled: incomplete for the CoT
    calls = [{"question": "Capital of France?"}, {"question": "Capital of Japan?"}]
    await differential(rt, server, program, calls, ["draft.predict", "refine"])
    sent = server.requests[-1].messages
    assert any("Capital of Italy?" in str(m["content"]) for m in sent)  # the demos went out
    assert type(program.draft) is dspy.ChainOfThought  # the user's program is untouched


async def test_a_rag_program_with_a_python_retriever(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS
    calls = [{"question": "What is the capital of france?"}, {"question": "And peru?"}]
    program = corpus.RAG()
    program.respond.predict.signature = program.respond.predict.signature.with_instructions(
        "Answer from the context only."
    )
    (first, _) = await differential(rt, server, program, calls, ["respond.predict"])
    assert first.context == [corpus.DOCS["france"]]


async def test_a_program_calling_one_predictor_in_a_loop(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS
    program = corpus.Hops()
    program.step.demos = [dspy.Example(question="q", notes=["n"], answer="a")]
    (pred,) = await differential(rt, server, program, [{"question": "Where?"}], ["step"])
    assert pred.notes == ["Paris"] * 3


async def test_nested_custom_modules(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS
    paths = ["check", "inner.stages[0]", "inner.stages[1].predict", "inner.by_tone['plain']"]
    (pred,) = await differential(rt, server, corpus.Nested(), [{"text": "Long text."}], paths)
    assert pred.verdict is True


async def test_a_typed_pydantic_output(rt: Runtime, server: ScriptedLM) -> None:
    server.script = ANSWERS
    program = corpus.Typed()
    demo = {"question": "Lima?", "city": corpus.City(name="Lima", population=9), "confidence": 1.0}
    program.facts.demos = [dspy.Example(**demo)]
    (pred,) = await differential(rt, server, program, [{"question": "Paris?"}], ["facts"])
    assert pred.city == corpus.City(name="Paris", population=2100000)


def react_script(request: RecordedRequest) -> Reply:
    """A ReAct step calls ``lookup`` first, then finishes; the extraction answers."""
    names, _ = requested_outputs(request)
    if "next_tool_name" in names:
        looked_up = "observation_0" in str(request.messages[-1]["content"])
        step: dict[str, Any] = (
            {"next_tool_name": "finish", "next_tool_args": {}}
            if looked_up
            else {"next_tool_name": "lookup", "next_tool_args": {"city": "Paris"}}
        )
        return respond(next_thought="Let me see.", **step)(request)
    return ANSWERS(request)


async def test_a_program_with_react_and_tools(rt: Runtime, server: ScriptedLM) -> None:
    server.script = react_script
    (pred,) = await differential(
        rt,
        server,
        corpus.Agent(),
        [{"question": "How many live in Paris?"}],
        ["agent.react", "agent.extract.predict"],
        ["agent"],  # one ReAct actor: its loop runs natively, not in the program
    )
    assert pred.trajectory["observation_0"] == corpus.lookup("Paris")


def compile_agent(program: corpus.Agent) -> corpus.Agent:
    """An Agent as an optimizer leaves it: new instructions for its ReAct step, demos on both
    of its predictors (one of the extraction's without reasoning)."""
    react = program.agent.react
    react.signature = react.signature.with_instructions("Use the lookup tool once, then finish.")
    react.demos = [
        dspy.Example(
            question="Who lives in Rome?",
            trajectory="[[ ## thought_0 ## ]]\nLook it up.",
            next_thought="I know enough.",
            next_tool_name="finish",
            next_tool_args={},
        )
    ]
    program.agent.extract.predict.demos = [
        dspy.Example(question="Who lives in Rome?", trajectory="...", answer="Romans")
    ]
    return program


async def test_a_compiled_react_is_served_whole(rt: Runtime, server: ScriptedLM) -> None:
    server.script = react_script
    program = compile_agent(corpus.Agent())
    paths = ["agent.react", "agent.extract.predict"]
    await differential(rt, server, program, [{"question": "Paris?"}], paths, ["agent"])
    sent = str(server.requests[0].messages)
    assert "Use the lookup tool once" in sent
    assert "Who lives in Rome?" in sent
    ref = await dspex.Module.wrap(program, name="qa2")
    assert isinstance(ref, dspex.modules.ProgramRef)
    react, extract = (await ref.info()).predictors
    assert (react.path, react.module_type, react.name, react.demos) == (
        "agent.react",
        "ReAct",
        "qa2.agent",
        1,
    )
    assert (extract.path, extract.module_type, extract.native_unsupported) == (
        "agent.extract.predict",
        "ReAct",
        None,
    )


async def test_a_react_native_cannot_build_is_served_whole_on_dspy(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = react_script
    program = compile_agent(corpus.Agent())
    extract = program.agent.extract.predict
    extract.signature = extract.signature.append("note", dspy.OutputField())  # not ReAct's own
    ref = await dspex.Module.wrap(program, name="qa")
    assert isinstance(ref, dspex.modules.ProgramRef)
    for info in (await ref.info()).predictors:
        assert info.implementations == ("dspy",)
        assert "its predictor 'extract.predict' has the fields" in str(info.native_unsupported)
    (ours,) = await served_as_dspy_serves(server, ref, program, [{"question": "Paris?"}])
    assert ours.served_by == {"agent.react": "dspy", "agent.extract.predict": "dspy"}
    # its demos are set on the copy DSPy runs
    new = [
        {
            "question": "Who?",
            "trajectory": "t",
            "next_thought": "n",
            "next_tool_name": "finish",
            "next_tool_args": {},
        }
    ]
    await ref.set_demos(new, predictor="agent.react")
    await ref(question="Paris?")
    assert "Who?" in str(server.requests[-2].messages)
    with pytest.raises(
        ConfigError,
        match=r"agent \(agent.react, agent.extract.predict\): its predictor 'extract.predict'",
    ):
        await dspex.Module.wrap(program, implementation="native")


async def test_demos_that_do_not_fit_one_of_a_react_s_predictors_change_nothing(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = react_script
    program = compile_agent(corpus.Agent())
    ref = await dspex.Module.wrap(program, name="qa")
    assert isinstance(ref, dspex.modules.ProgramRef)
    agent = ref.predictors["agent"]
    with pytest.raises(ConfigError, match="a demo needs at least one input field"):
        await ref.set_demos([{"answer": "only an output"}], predictor="agent.extract.predict")
    # the actor's own messages: an inner predictor it does not have is an error, not a crash
    with pytest.raises(ConfigError, match=r"no predictor 'extract' of its own; its predictors: "):
        await agent._ask(GetDemos("extract"))
    with pytest.raises(ConfigError, match=r"no predictor 'extract' of its own"):
        await agent._ask(SetDemos([], "extract"))
    assert [p.demos for p in (await ref.info()).predictors] == [1, 1]
    assert (await ref(question="Paris?")).answer == "Paris"
    assert "Who lives in Rome?" in str(server.requests[-1].messages)  # its demos, as they were
    assert (await rt.metrics()).restarts == {}  # no actor crashed


async def test_a_multi_chain_comparison_is_served_whole(rt: Runtime, server: ScriptedLM) -> None:
    server.script = respond(answer="Paris", reasoning="It is the capital.", rationale="Both agree.")
    program = corpus.Compare()
    program.compare.predict.demos = [
        dspy.Example(
            question="q",
            reasoning_attempt_1="«I'm trying to a I'm not sure but my prediction is b»",
            reasoning_attempt_2="«I'm trying to c I'm not sure but my prediction is d»",
            rationale="r",
            answer="b",
        )
    ]
    (pred,) = await differential(
        rt,
        server,
        program,
        [{"question": "Capital?"}],
        ["draft.predict", "compare.predict"],
        ["draft.predict", "compare"],
    )
    assert pred.rationale == "Both agree."


async def test_a_best_of_n_is_served_whole(rt: Runtime, server: ScriptedLM) -> None:
    server.script = respond(answer="It is Paris", reasoning="It is the capital.")
    (pred,) = await differential(
        rt, server, corpus.Best(), [{"question": "Capital?"}], ["best.module.predict"], ["best"]
    )
    assert pred.answer == "It is Paris"
    assert len(server.requests) == 6  # three attempts, on each side


async def test_a_refine_is_served_whole(rt: Runtime, server: ScriptedLM) -> None:
    server.script = respond(
        answer="It is Paris", discussion="Too long.", advice={"self": "One word."}
    )
    (pred,) = await differential(
        rt, server, corpus.Refined(), [{"question": "Capital?"}], ["refine.module"], ["refine"]
    )
    assert pred.answer == "It is Paris"
    assert len(server.requests) == 6  # attempt, feedback, hinted attempt, on each side
    assert "One word." in str(server.requests[2].messages)  # the advice reached the attempt


async def test_a_best_of_n_over_a_custom_module_runs_inside_the_program(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = ANSWERS
    program = corpus.BestOfCustom()
    ref = await dspex.Module.wrap(program, name="qa")
    assert isinstance(ref, dspex.modules.ProgramRef)
    assert ref.predictors == {}
    infos = (await ref.info()).predictors
    assert [i.path for i in infos] == ["best.module.draft.predict", "best.module.refine"]
    for info in infos:
        assert info.implementations == ("dspy",)
        assert info.name is None
        assert "BestOfN over a DraftRefine runs inside the program" in str(info.native_unsupported)
    (ours,) = await served_as_dspy_serves(server, ref, program, [{"question": "Capital?"}])
    # DSPy ran them in the program: read from its trace (the best attempt's copies)
    assert ours.served_by == {"best.module.draft.predict": "dspy", "best.module.refine": "dspy"}
    assert ours.implementation == "dspy"
    with pytest.raises(ConfigError, match=r"best\.module\.refine: a BestOfN over a DraftRefine"):
        await dspex.Module.wrap(program, implementation="native")


async def test_a_program_running_dspy_parallel(rt: Runtime, server: ScriptedLM) -> None:
    """The predictor calls a ``dspy.Parallel`` makes from its own threads are served by the
    predictor's actor and recorded with their program call."""
    server.script = ANSWERS
    program = corpus.FanOut()
    ref = await dspex.Module.wrap(program, name="qa")
    ours = await ref(question="Capital?")
    theirs = await run_dspy(server, program, {"question": "Capital?"})
    assert ours.to_dict() == dict(theirs.items()) == {"answers": ["Paris"] * 3}
    # the same requests (in the order the threads ran them)
    assert len(server.requests) == 6
    assert sorted(r.content for r in server.requests[:3]) == sorted(
        r.content for r in server.requests[3:]
    )
    assert (ours.implementation, ours.served_by) == ("native", {"ask": "native"})
    assert (await rt.metrics()).modules["qa.ask"]["native"].calls == 3


async def test_native_names_every_predictor_it_cannot_serve(rt: Runtime) -> None:
    program = corpus.DraftRefine()
    program.refine.config["rollout_id"] = 3  # an LM setting native does not send
    program.draft.predict.callbacks = [dspy.utils.callback.BaseCallback()]
    with pytest.raises(ConfigError) as info:
        await dspex.Module.wrap(program, implementation="native")
    message = str(info.value)
    assert "draft.predict: it has DSPy callbacks" in message
    assert "refine: its Predict config ['rollout_id']" in message


async def test_without_native_a_predictor_is_served_on_dspy(
    rt: Runtime, server: ScriptedLM
) -> None:
    program = corpus.DraftRefine()
    program.refine.config["rollout_id"] = 3
    ref = await dspex.Module.wrap(program, name="qa")
    assert (await ref(question="q")).answer == "Paris"
    report = (await rt.metrics()).modules
    assert set(report["qa.refine"]) == {"dspy"}
    assert set(report["qa.draft.predict"]) == {"native"}


async def test_dspy_runs_the_whole_program_on_dspy(rt: Runtime, server: ScriptedLM) -> None:
    ref = await dspex.Module.wrap(corpus.DraftRefine(), name="qa", implementation="python")
    assert (await ref(question="q")).answer == "Paris"
    assert not isinstance(ref, dspex.modules.ProgramRef)
    assert set((await rt.metrics()).modules) == {"qa"}


async def test_an_aforward_calling_a_predictor_synchronously_is_a_module_error(
    rt: Runtime,
) -> None:
    class Blocking(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict("question -> answer")

        async def aforward(self, question: str) -> Any:
            return self.predict(question=question)  # would block the event loop

    ref = await dspex.Module.wrap(Blocking())
    with pytest.raises(dspex.ModuleError, match=r"await self\.predict\.acall"):
        await ref(question="q")


async def test_set_demos_names_one_predictor(rt: Runtime, server: ScriptedLM) -> None:
    ref = await dspex.Module.wrap(corpus.DraftRefine(), name="qa")
    assert isinstance(ref, dspex.modules.ProgramRef)
    with pytest.raises(ConfigError, match=r"no predictor 'draft'; its predictors: \['draft"):
        await ref.set_demos([], predictor="draft")
    await ref.set_demos(
        [{"question": "Capital of Chad?", "answer": "N'Djamena"}], predictor="refine"
    )
    assert (await ref.info()).demos == 1
    await ref(question="q")
    assert "N'Djamena" in str(server.requests[-1].messages)


async def test_a_program_wrapped_with_the_two_step_adapter(rt: Runtime, server: ScriptedLM) -> None:
    # Module.wrap(adapter=dspex.TwoStep(lm)): every predictor answers in prose, then the
    # extraction LM reads its fields, natively, as plain DSPy under a dspy.TwoStepAdapter does
    extraction = dspex.LM("openai/extractor", api_base=server.base_url, api_key="sk-test")

    def script(request: RecordedRequest) -> Reply:
        if request.messages[0]["content"].startswith("You are a helpful assistant"):
            return Reply("The context says Paris; that is the answer.")
        return ANSWERS(request)

    server.script = script
    program = corpus.RAG()
    ref = await dspex.Module.wrap(program, name="qa", adapter=dspex.TwoStep(extraction))
    inputs = {"question": "What is the capital of France?"}
    ours = await ref(**inputs)
    middle = len(server.requests)
    adapter = dspy.TwoStepAdapter(extraction.to_dspy())
    with dspy.context(lm=lm_of(server).to_dspy(), adapter=adapter):
        theirs = await program.acall(**inputs)
    same_requests(server.requests[:middle], server.requests[middle:])
    assert ours.to_dict() == dict(theirs.items())
    assert ours.served_by == {"respond.predict": "native"}
    assert [r.body["model"] for r in server.requests[:middle] if r.body] == [
        "scripted",
        "extractor",
    ]
