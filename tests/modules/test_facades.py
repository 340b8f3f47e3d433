"""Every DSPy module type through its facade, against the scripted LM."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import dspy
import pytest

import dspex
from dspex.errors import ActorExited, ConfigError, InputError, SignatureError
from dspex.runtime import Runtime
from dspex.testing import RecordedRequest, Reply, ScriptedLM, inject_faults, respond


def lookup(city: str) -> str:
    """Look up facts about a city."""
    return f"{city} is a city."


IMPLEMENTATIONS = pytest.mark.parametrize("implementation", ["native", "dspy"])


def react_steps(tool: str, args: dict[str, Any]) -> Any:
    """A script for one ReAct call: call ``tool``, finish, extract (read from the request)."""

    def script(request: RecordedRequest) -> Reply:
        if "next_tool_name" not in request.messages[0]["content"]:
            return respond(reasoning="From the lookup.", answer="Paris")(request)
        if "[[ ## observation_0 ## ]]" in request.messages[-1]["content"]:
            return respond(next_thought="Done.", next_tool_name="finish", next_tool_args={})(
                request
            )
        return respond(next_thought="Look it up.", next_tool_name=tool, next_tool_args=args)(
            request
        )

    return script


@IMPLEMENTATIONS
async def test_react_runs_tools(rt: Runtime, server: ScriptedLM, implementation: str) -> None:
    server.script = react_steps("lookup", {"city": "Paris"})
    react = await dspex.ReAct.create(
        "question -> answer", tools=[lookup], max_iters=3, implementation=implementation
    )
    result = await react(question="Capital of France?")
    assert result.answer == "Paris"
    assert result.implementation == implementation
    assert result.trajectory["observation_0"] == "Paris is a city."
    assert "Paris is a city." in server.requests[1].messages[-1]["content"]  # the observation


async def test_react_is_native_by_default_and_overlaps_slow_tools(
    rt: Runtime, server: ScriptedLM
) -> None:
    """Concurrent callers of one ReAct module overlap their tool calls (I/O in an async tool,
    a blocking sleep in a sync one): neither the actor nor the tools serialize them."""
    spans: dict[str, list[tuple[float, float]]] = {"fetch": [], "read": []}

    async def fetch(url: str) -> str:
        """Fetch a URL."""
        start = time.monotonic()
        await asyncio.sleep(0.2)
        spans["fetch"].append((start, time.monotonic()))
        return url

    def read(path: str) -> str:
        """Read a file."""
        start = time.monotonic()
        time.sleep(0.2)
        spans["read"].append((start, time.monotonic()))
        return path

    react_fetch = await dspex.ReAct.create("question -> answer", tools=[fetch, read])
    react_read = await dspex.ReAct.create("question -> answer", tools=[read, fetch])
    fetching, reading = react_steps("fetch", {"url": "u"}), react_steps("read", {"path": "p"})
    server.script = lambda r: (reading if "(1) read" in r.messages[0]["content"] else fetching)(r)
    results = await asyncio.gather(
        *(react_fetch(question=f"q{i}") for i in range(3)),
        *(react_read(question=f"q{i}") for i in range(3)),
    )
    assert {r.implementation for r in results} == {"native"}
    for tool, intervals in spans.items():
        assert len(intervals) == 3, tool
        assert max(s for s, _ in intervals) < min(e for _, e in intervals), f"{tool} serialized"


@IMPLEMENTATIONS
async def test_multi_chain_comparison(rt: Runtime, server: ScriptedLM, implementation: str) -> None:
    server.script = respond(rationale="Both agree.", answer="Paris")
    mcc = await dspex.MultiChainComparison.create(
        "question -> answer", M=2, implementation=implementation
    )
    attempts = [{"reasoning": "r1", "answer": "Paris"}, {"reasoning": "r2", "answer": "Paris"}]
    result = await mcc(question="Capital of France?", completions=attempts)
    assert result.answer == "Paris"
    assert result.implementation == implementation
    assert "r1" in server.requests[0].messages[-1]["content"]


@IMPLEMENTATIONS
@pytest.mark.parametrize("facade", [dspex.BestOfN, dspex.Refine])
async def test_best_of_n_and_refine(
    rt: Runtime, server: ScriptedLM, facade: type[dspex.BestOfN], implementation: str
) -> None:
    scores: list[str] = []

    def reward(args: dict[str, Any], pred: Any) -> float:
        scores.append(pred.answer)
        return 1.0

    module = await facade.create(
        "question -> answer",
        N=3,
        reward_fn=reward,
        threshold=1.0,
        module="ChainOfThought",
        implementation=implementation,
    )
    result = await module(question="Capital of France?")
    assert result.answer == "Paris"
    assert result.reasoning == "Paris is the capital of France."
    assert result.implementation == implementation
    assert len(server.requests) == 1  # the first attempt met the threshold
    # The reward runs where the module runs: on dspy, in a worker process (on a copy).
    assert scores == (["Paris"] if implementation == "native" else [])


@IMPLEMENTATIONS
async def test_parallel_returns_results_in_order(
    rt: Runtime, server: ScriptedLM, implementation: str
) -> None:
    server.script = lambda request: respond(
        answer=request.messages[-1]["content"].split("\n")[1].upper()
    )(request)
    par = await dspex.Parallel.create(
        "question -> answer", num_threads=2, implementation=implementation
    )
    result = await par(batch=[{"question": "a"}, {"question": "b"}, {"question": "c"}])
    assert [r.answer for r in result.results] == ["A", "B", "C"]
    assert result.implementation == implementation
    with pytest.raises(InputError, match="batch"):
        await par(batch="not a list")


@pytest.mark.parametrize(
    ("facade", "options"),
    [
        (dspex.Predict, {}),
        (dspex.ChainOfThought, {}),
        (dspex.ReAct, {"tools": [lookup]}),
        (dspex.MultiChainComparison, {}),
        (dspex.BestOfN, {"N": 1, "reward_fn": lambda a, p: 1.0, "threshold": 1.0}),
        (dspex.Refine, {"N": 1, "reward_fn": lambda a, p: 1.0, "threshold": 1.0}),
        (dspex.Parallel, {}),
    ],
)
async def test_every_native_type_is_routed_to_native(
    rt: Runtime, facade: type[dspex.Predict], options: dict[str, Any]
) -> None:
    module = await facade.create("question -> answer", **options)
    info = await module.info()
    assert info.implementations == ("native", "dspy")
    assert info.native_available


async def test_program_of_thought_without_deno_is_a_clear_error(rt: Runtime) -> None:
    with pytest.raises(ConfigError, match="Deno"):
        await dspex.ProgramOfThought.create("question -> answer")


async def test_any_dspy_module_can_be_wrapped(rt: Runtime) -> None:
    class Shout(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict("question -> answer")

        def forward(self, question: str) -> Any:
            answer = self.predict(question=question).answer
            return dspy.Prediction(answer=answer.upper())

    shout = await dspex.Module.wrap(Shout, lm=rt.lm)
    result = await shout(question="Capital of France?")
    assert result.answer == "PARIS"
    with pytest.raises(ConfigError, match=r"dspy\.Module"):
        await dspex.Module.wrap(42)


async def test_create_rejects_bad_arguments_clearly(rt: Runtime) -> None:
    with pytest.raises(SignatureError):
        await dspex.Predict.create("question answer")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['tool'\]"):
        await dspex.ReAct.create("question -> answer", tool=[lookup])
    with pytest.raises(ConfigError, match=r"needs the option\(s\) \['tools'\]"):
        await dspex.ReAct.create("question -> answer")
    with pytest.raises(ConfigError, match="adapter must be one of"):
        await dspex.Predict.create("question -> answer", adapter="yaml")
    with pytest.raises(ConfigError, match=r"demos\[0\] must be a mapping"):
        await dspex.Predict.create("question -> answer", demos=["not a dict"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="lm must be"):
        await dspex.Predict.create("question -> answer", lm="openai/gpt-4o")


async def test_missing_inputs_fail_the_call_not_the_actor(rt: Runtime) -> None:
    predict = await dspex.Predict.create("context, question -> answer")
    with pytest.raises(InputError, match=r"\['question'\]"):
        await predict(context="c")
    assert predict.actor.alive
    assert (await predict(context="c", question="q")).answer == "Paris"


async def test_signature_class_instructions_and_descriptions(
    rt: Runtime, server: ScriptedLM
) -> None:
    class QA(dspy.Signature):
        """Answer in one word."""

        question: str = dspy.InputField()
        answer: str = dspy.OutputField(desc="one word")

    from_class = await dspex.Predict.create(QA)
    from_text = await dspex.Predict.create(
        "question -> answer",
        instructions="Answer in one word.",
        descriptions={"answer": "one word"},
    )
    await from_class.execute({"question": "q"}, cache=False)  # each sends its own request
    await from_text.execute({"question": "q"}, cache=False)
    assert server.requests[0].messages == server.requests[1].messages


async def test_info_and_demos_that_survive_a_restart(rt: Runtime, server: ScriptedLM) -> None:
    predict = await dspex.Predict.create("question -> answer")
    info = await predict.info()
    assert (info.module_type, info.signature, info.implementations) == (
        "Predict",
        "question -> answer",
        ("native", "dspy"),
    )
    assert (info.native_available, info.circuit, info.demos) == (True, "closed", 0)
    await predict.set_demos([{"question": "Capital of Italy?", "answer": "Rome"}])
    inject_faults(rt, crash_actor_on={1})
    await predict(question="q")  # the actor crashes, is restarted and the call sent again
    assert (await predict.info()).demos == 1
    assert "Rome" in server.requests[-1].messages[2]["content"]


async def test_stop_removes_the_module(rt: Runtime) -> None:
    predict = await dspex.Predict.create("question -> answer")
    await predict.stop()
    with pytest.raises((ActorExited, dspex.NoProc)):
        await predict(question="q")


@pytest.mark.parametrize("module", [dspex.Predict, dspex.ChainOfThought])
async def test_n_completions_are_every_one_and_the_same_on_both_implementations(
    rt: Runtime, server: ScriptedLM, module: type[dspex.Predict]
) -> None:
    def two(request: RecordedRequest) -> Reply:
        text = str(respond(answer="Paris", reasoning="r")(request).text)
        return Reply([text, text.replace("Paris", "Lyon")])

    server.script = two
    qa = await module.create("question -> answer")
    served = {
        impl: await qa.execute({"question": "q"}, implementation=impl, n=2, cache=False)
        for impl in ("native", "dspy")
    }
    native, on_dspy = served["native"], served["dspy"]
    assert native.completions is not None
    assert [c["answer"] for c in native.completions] == ["Paris", "Lyon"]
    assert on_dspy.completions == native.completions  # every completion, equal
    assert (on_dspy.answer, on_dspy.implementation) == ("Paris", "dspy")
    assert server.requests[0].body == server.requests[1].body  # the same request
    assert server.requests[0].body is not None
    assert server.requests[0].body["n"] == 2


async def test_a_prediction_input_is_sent_as_dspy_sends_it(rt: Runtime, server: ScriptedLM) -> None:
    """A ``dspy.Prediction`` given to an input field named ``prediction`` (a judge's input) is
    formatted as plain DSPy formats it, on both implementations."""
    server.script = respond(verdict="ok")
    earlier = dspy.Prediction(answer="Paris", reasoning="It is the capital.")
    assert rt.lm is not None
    with dspy.context(lm=rt.lm.to_dspy()):
        await dspy.Predict("question, prediction -> verdict").acall(
            question="q", prediction=earlier
        )
    judge = await dspex.Predict.create("question, prediction -> verdict")
    for impl in ("native", "dspy"):
        served = await judge.execute(
            {"question": "q", "prediction": earlier}, implementation=impl, cache=False
        )
        assert served.verdict == "ok"
    plain, native, on_dspy = server.requests
    assert native.body == plain.body
    assert on_dspy.body == plain.body
    assert plain.body is not None
    assert "Prediction(\n    answer='Paris'" in plain.body["messages"][-1]["content"]
