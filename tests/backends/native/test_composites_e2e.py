"""Native MultiChainComparison, BestOfN, Refine and Parallel against DSPy 3.4.1.

Each case builds one ModuleSpec (the options both implementations take) and runs it on the
native backend and on the dspy backend (real DSPy modules) over HTTP to one ScriptedLM: the same
requests (messages and bodies), equal predictions.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dspex.backends._spec import NO_OPTIONS, CallOptions, ModuleSpec
from dspex.backends.dspy import DSPyBackend
from dspex.backends.native import NativeBackend, NativeMultiChainComparison, NativeParallel
from dspex.backends.native._predict import NativePredict
from dspex.errors import InputError, ParseError
from dspex.lm import LM, LMClient
from dspex.prediction import Prediction
from dspex.signature import Signature
from dspex.testing import Hang, RecordedRequest, Reply, Script, ScriptedLM, respond

from .corpus import typed
from .differential import compare

QUESTION = {"question": "What is the capital of France?"}
GARBAGE = "I will not follow the format."


class Pair:
    """One spec built on both implementations; ``run`` compares one call of each."""

    def __init__(self, server: ScriptedLM, client: LMClient, spec: ModuleSpec):
        self.server, self.spec = server, spec
        self.native_backend, self.dspy_backend = NativeBackend(client), DSPyBackend()
        self.native: Any = None
        self.reference: Any = None

    @classmethod
    async def build(
        cls,
        server: ScriptedLM,
        client: LMClient,
        lm: LM,
        module_type: str,
        signature: str = "question -> answer",
        **spec: Any,
    ) -> Pair:
        pair = cls(
            server,
            client,
            ModuleSpec(
                module_type=module_type, signature=Signature.parse(signature), lm=lm, **spec
            ),
        )
        pair.native = await pair.native_backend.create(pair.spec)
        pair.reference = await pair.dspy_backend.create(pair.spec)
        return pair

    async def run(
        self,
        inputs: dict[str, Any],
        options: CallOptions = NO_OPTIONS,
        *,
        script: Callable[[], Script] | None = None,
        ordered: bool = True,
        view: Callable[[Prediction], Any] = lambda p: p,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...], list[RecordedRequest]]:
        async def native() -> Any:
            return view(await self.native_backend.execute(self.native, inputs, options))

        async def reference() -> Any:
            return view(await self.dspy_backend.execute(self.reference, inputs, options))

        return await compare(self.server, native, reference, script=script, ordered=ordered)


def in_order(*replies: str | Callable[[RecordedRequest], Reply]) -> Callable[[], Script]:
    """A fresh script per run: attempt requests get ``replies`` in order (then the last one
    again); Refine's feedback requests get advice for the predictor."""

    def make() -> Script:
        answers: Iterator[Any] = itertools.chain(replies, itertools.repeat(replies[-1]))

        def script(request: RecordedRequest) -> Reply:
            if "`advice`" in request.messages[0]["content"]:
                return respond(
                    discussion="The module answered with a city that is not the capital.",
                    advice={"self": "Answer with the capital.", "predict": "Think of capitals."},
                )(request)
            reply = next(answers)
            return reply(request) if callable(reply) else Reply(reply)

        return script

    return make


def answer(city: str) -> Callable[[RecordedRequest], Reply]:
    return respond(answer=city, reasoning=f"I think of {city}.")


def is_paris(args: dict[str, Any], pred: Any) -> float:
    return 1.0 if pred.answer == "Paris" else 0.0


def length(args: dict[str, Any], pred: Any) -> float:
    return float(len(pred.answer))


# -- MultiChainComparison -----------------------------------------------------------------------

ATTEMPTS = [
    {"reasoning": "Paris is the capital.\nIt has been for ages.", "answer": "Paris"},
    {"rationale": "  Lyon is big. ", "reasoning": "ignored", "answer": "Lyon\nor not"},
    {"reasoning": "France's capital is Paris", "answer": "Paris"},
]


@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
async def test_multi_chain_comparison_like_dspy(
    server: ScriptedLM, client: LMClient, lm: LM, adapter: str
) -> None:
    server.script = respond(rationale="Most attempts say Paris.", answer="Paris")
    demos = ({"question": "Capital of Italy?", "answer": "Rome"},)
    pair = await Pair.build(
        server, client, lm, "MultiChainComparison", adapter=adapter, demos=demos
    )
    inputs = {**QUESTION, "completions": ATTEMPTS}
    got_native, got_dspy, sent = await pair.run(inputs, CallOptions(temperature=0.2))
    assert got_native == got_dspy
    assert got_native[0] == "ok"
    assert [k for k, _ in got_native[1][1]] == ["rationale", "answer"]
    (request,) = sent
    assert request.body is not None
    assert request.body["temperature"] == 0.7  # the module's temperature beats the call's
    user = request.messages[-1]["content"]
    assert "«I'm trying to Lyon is big. I'm not sure but my prediction is Lyon»" in user


async def test_multi_chain_comparison_options(server: ScriptedLM, client: LMClient, lm: LM) -> None:
    server.script = respond(rationale="r", answer="Paris")
    pair = await Pair.build(
        server, client, lm, "MultiChainComparison", options={"M": 2, "temperature": 0.3}
    )
    inputs = {**QUESTION, "completions": ATTEMPTS[:2]}
    got_native, got_dspy, sent = await pair.run(inputs)
    assert got_native == got_dspy
    assert sent[0].body is not None
    assert sent[0].body["temperature"] == 0.3


async def test_multi_chain_comparison_rejects_bad_completions(client: LMClient, lm: LM) -> None:
    mcc = NativeMultiChainComparison("question -> answer", lm=lm, client=client, M=2)
    with pytest.raises(InputError, match=r"number of attempts \(1\) doesn't match .* M \(2\)"):
        await mcc.run({**QUESTION, "completions": ATTEMPTS[:1]})
    with pytest.raises(InputError, match="'rationale' or 'reasoning'"):
        await mcc.run({**QUESTION, "completions": [{"answer": "x"}] * 2})
    with pytest.raises(InputError, match="output field 'answer'"):
        await mcc.run({**QUESTION, "completions": [{"reasoning": "x"}] * 2})
    with pytest.raises(InputError, match="completions="):
        await mcc.run(dict(QUESTION))


# -- BestOfN ------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["Predict", "ChainOfThought"])
async def test_best_of_n_stops_at_the_threshold(
    server: ScriptedLM, client: LMClient, lm: LM, module: str
) -> None:
    options = {"N": 3, "reward_fn": is_paris, "threshold": 1.0, "module": module}
    pair = await Pair.build(server, client, lm, "BestOfN", options=options)
    script = in_order(answer("Lyon"), answer("Paris"), answer("Nice"))
    got_native, got_dspy, sent = await pair.run(QUESTION, script=script)
    assert got_native == got_dspy
    assert dict(got_native[1][1])["answer"] == ("str", "Paris")
    assert len(sent) == 2
    assert all(r.body is not None and r.body["temperature"] == 1.0 for r in sent)


async def test_best_of_n_keeps_the_best_when_none_meets_it(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    options = {"N": 3, "reward_fn": length, "threshold": 100}
    pair = await Pair.build(server, client, lm, "BestOfN", options=options)
    script = in_order(answer("Lyon"), answer("Marseille"), answer("Nice"))
    got_native, got_dspy, sent = await pair.run(QUESTION, CallOptions(max_tokens=50), script=script)
    assert got_native == got_dspy
    assert dict(got_native[1][1])["answer"] == ("str", "Marseille")
    assert len(sent) == 3
    # spelled as the engine each request goes by writes it (see dspex.lm._engine)
    assert all(r.body is not None and r.body.get("max_completion_tokens") == 50 for r in sent)


async def test_best_of_n_failures_count_as_in_dspy(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    calls = {"n": 0}

    def flaky(args: dict[str, Any], pred: Any) -> float:
        calls["n"] += 1
        if calls["n"] % 2:
            raise ValueError("reward failed")
        return is_paris(args, pred)

    options = {"N": 3, "reward_fn": flaky, "threshold": 1.0}
    pair = await Pair.build(server, client, lm, "BestOfN", options=options)
    # An unparsable reply (plus its JSON fallback), a failing reward, then a good attempt.
    script = in_order(GARBAGE, GARBAGE, answer("Paris"), answer("Paris"))
    got_native, got_dspy, sent = await pair.run(QUESTION, script=script)
    assert got_native == got_dspy
    assert dict(got_native[1][1])["answer"] == ("str", "Paris")
    assert len(sent) == 4


async def test_best_of_n_gives_up_and_keeps_its_fail_count_like_dspy(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    # DSPy re-raises once an attempt's index exceeds fail_count, which failures decrement on
    # the module for good: with N=2 the first call returns None, the second raises.
    options = {"N": 2, "reward_fn": is_paris, "threshold": 1.0}
    pair = await Pair.build(server, client, lm, "BestOfN", options=options)
    script = in_order(GARBAGE)
    first_native, first_dspy, sent = await pair.run(QUESTION, script=script)
    assert first_native == first_dspy == ("ok", typed({"output": None}))
    assert len(sent) == 4
    second_native, second_dspy, _ = await pair.run(QUESTION, script=script)
    assert second_native == second_dspy == ("parse_error",)
    three = await Pair.build(server, client, lm, "BestOfN", options={**options, "N": 3})
    assert (await three.run(QUESTION, script=script))[:2] == (("parse_error",),) * 2


async def test_best_of_n_takes_async_reward_functions(client: LMClient, lm: LM) -> None:
    async def reward(args: dict[str, Any], pred: Any) -> float:
        await asyncio.sleep(0)
        return is_paris(args, pred)

    async with ScriptedLM(in_order(answer("Lyon"), answer("Paris"))()) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
        spec = ModuleSpec(
            module_type="BestOfN",
            signature=Signature.parse("question -> answer"),
            lm=lm,
            options={"N": 3, "reward_fn": reward, "threshold": 1.0},
        )
        backend = NativeBackend(client)
        pred = await backend.execute(await backend.create(spec), QUESTION, NO_OPTIONS)
    assert pred.answer == "Paris"
    assert pred.usage["total_tokens"] > 0
    assert len(server.requests) == 2


# -- Refine -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("module", "adapter"), [("Predict", "chat"), ("ChainOfThought", "json")])
async def test_refine_feeds_advice_back_like_dspy(
    server: ScriptedLM, client: LMClient, lm: LM, module: str, adapter: str
) -> None:
    options = {"N": 3, "reward_fn": is_paris, "threshold": 1.0, "module": module}
    demos = ({"question": "Capital of Italy?", "answer": "Rome"},)
    pair = await Pair.build(
        server, client, lm, "Refine", options=options, adapter=adapter, demos=demos
    )
    script = in_order(answer("Lyon"), answer("Nice"), answer("Paris"))
    got_native, got_dspy, sent = await pair.run(
        QUESTION, CallOptions(temperature=0.1), script=script
    )
    assert got_native == got_dspy
    assert dict(got_native[1][1])["answer"] == ("str", "Paris")
    # attempt, feedback, hinted attempt, feedback, hinted attempt
    assert len(sent) == 5
    temperatures = [r.body["temperature"] for r in sent if r.body is not None]
    assert temperatures == [1.0, 0.1, 1.0, 0.1, 1.0]
    feedback = sent[1].messages[-1]["content"]
    assert "class Predict(" in feedback or "class ChainOfThought(" in feedback
    assert "def is_paris(args: dict[str, Any], pred: Any) -> float:" in feedback
    hinted = sent[2].messages[-1]["content"]
    assert "[[ ## hint_ ## ]]" in hinted


async def test_refine_with_a_failed_feedback_and_no_threshold(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    options = {"N": 3, "reward_fn": length, "threshold": None, "fail_count": 5}

    def make() -> Script:
        attempts = iter(["Lyon", "Nice", "Marseille"])
        advice = '{"discussion": "d", "advice": {"self": "Be longer."}}'
        feedbacks = itertools.chain([GARBAGE, GARBAGE], itertools.repeat(advice))

        def script(request: RecordedRequest) -> Reply:
            if "`advice`" in request.messages[0]["content"]:
                return Reply(next(feedbacks))
            return answer(next(attempts))(request)

        return script

    pair = await Pair.build(server, client, lm, "Refine", options=options)
    got_native, got_dspy, sent = await pair.run(QUESTION, script=make)
    assert got_native == got_dspy
    assert dict(got_native[1][1])["answer"] == ("str", "Marseille")
    # attempt, feedback (chat and JSON: unparsable, a failed attempt), attempt, feedback (the
    # JSON fallback parses), attempt with the advice
    assert len(sent) == 7
    assert "Be longer." in sent[-1].messages[-1]["content"]


# -- Parallel -----------------------------------------------------------------------------------


def _by_question(request: RecordedRequest) -> Reply:
    question = request.messages[-1]["content"].split("\n")[1]
    if question == "bad":
        return Reply(GARBAGE)
    return respond(answer=question.upper(), reasoning=f"Shout {question}.")(request)


def _results(pred: Prediction) -> dict[str, Any]:
    return {
        "results": [
            typed(r.to_dict()) if isinstance(r, Prediction) else "error" for r in pred.results
        ]
    }


@pytest.mark.parametrize("module", ["Predict", "ChainOfThought"])
async def test_parallel_like_dspy(
    server: ScriptedLM, client: LMClient, lm: LM, module: str
) -> None:
    server.script = _by_question
    options = {"module": module, "num_threads": 3}
    pair = await Pair.build(server, client, lm, "Parallel", options=options)
    batch = [{"question": q} for q in ("a", "b", "bad", "c", "d", "e")]
    got_native, got_dspy, sent = await pair.run(
        {"batch": batch}, CallOptions(temperature=0.4), ordered=False, view=_results
    )
    assert got_native == got_dspy
    results = [r for _, r in dict(got_native[1][1])["results"][1]]
    assert results[2] == "error"
    assert len(sent) == 7  # one each, and the JSON fallback of the bad one
    native = await pair.native_backend.execute(pair.native, {"batch": batch}, NO_OPTIONS)
    assert [r.answer for r in native.results if isinstance(r, Prediction)] == list("ABCDE")
    assert isinstance(native.results[2], ParseError)


async def test_parallel_items_fail_alone(client: LMClient, lm: LM, server: ScriptedLM) -> None:
    server.script = _by_question
    parallel = NativeParallel(NativePredict("question -> answer", lm=lm, client=client))
    pred = await parallel.run({"batch": [{"question": "a"}, {"query": "b"}, "c"]})
    first, missing, not_a_mapping = pred.results
    assert first.answer == "A"
    assert isinstance(missing, InputError)
    assert isinstance(not_a_mapping, InputError)
    assert len(server.requests) == 1


async def test_parallel_bounds_concurrency(client: LMClient) -> None:
    async with ScriptedLM(Reply("[[ ## answer ## ]]\nok", latency=0.05)) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
        parallel = NativeParallel(NativePredict("question -> answer", lm=lm, client=client), 3)
        pred = await parallel.run({"batch": [{"question": str(i)} for i in range(10)]})
    assert [r.answer for r in pred.results] == ["ok"] * 10
    events = sorted(
        [(r.started_at, 1) for r in server.requests]
        + [(r.finished_at or 0.0, -1) for r in server.requests]
    )
    in_flight = list(itertools.accumulate(step for _, step in events))
    assert max(in_flight) == 3


async def test_cancelling_parallel_cancels_every_item(client: LMClient) -> None:
    async with ScriptedLM(Hang()) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
        parallel = NativeParallel(NativePredict("question -> answer", lm=lm, client=client), 4)
        before = asyncio.all_tasks()
        task = asyncio.create_task(parallel.run({"batch": [{"question": "q"}] * 8}))
        await server.wait_for_requests(4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert asyncio.all_tasks() - before == set()
    assert len(server.requests) == 4


async def test_a_bug_in_one_parallel_item_cancels_its_siblings_and_leaves_nothing_running(
    client: LMClient,
) -> None:
    """Parallel's items run in one anyio task group: an item that hits a bug (not an item's
    own DSPexError, which is its result) cancels the items still sleeping; none is left."""
    started: list[int] = []
    cancelled: list[int] = []
    inner = NativePredict(
        "question -> answer", lm=LM("openai/x", api_base="http://x"), client=client
    )

    class Sleepy:
        signature = inner.signature

        async def run(self, values: dict[str, Any], options: Any) -> Any:
            index = int(values["question"])
            started.append(index)
            if index == 2:
                await asyncio.sleep(0.01)
                raise RuntimeError("a bug in item 2")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(index)
                raise

    parallel = NativeParallel(inner, 4)
    parallel.module = Sleepy()  # type: ignore[assignment]
    before = asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="a bug in item 2"):
        await parallel.run({"batch": [{"question": str(i)} for i in range(8)]})
    assert sorted(started) == [0, 1, 2, 3]  # num_threads=4: the others never started
    assert sorted(cancelled) == [0, 1, 3]
    assert asyncio.all_tasks() - before == set()
