"""``ModuleRef.stream`` end to end, over HTTP from a ScriptedLM that streams server-sent
events: native and dspy (DSPy's own ``streamify``, in process and in a worker process) give
the same text per field, the same ``is_last`` flags, the same final Prediction and the same
request body; streams are per call, cancel their LM request when left, respect deadlines, fall
back only before their first chunk, and hold a bounded buffer for a slow reader."""

from __future__ import annotations

import asyncio
import gc
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import dspy
import pytest

import dspex
from dspex.config import Config
from dspex.errors import ConfigError, InputError, LMConnectionError, Timeout
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.streaming._call import BUFFER
from dspex.testing import RecordedRequest, Reply, ScriptedLM, Status, respond

# Every stream closes its buffer (an anyio memory object stream) whichever way it ends: anyio
# warns "Unclosed <MemoryObject...Stream>" for one that is not. (Only those: sockets that other
# tests' LiteLLM clients left to the garbage collector may be collected during these tests.)
pytestmark = pytest.mark.filterwarnings("error:Unclosed <MemoryObject:ResourceWarning")

NATIVE_ONLY = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})
VALUES = {
    "reasoning": "Paris has been the capital of France for centuries.",
    "answer": "Paris",
}


def _lm(server: ScriptedLM, **kwargs: Any) -> LM:
    return LM("openai/scripted", api_base=server.base_url, api_key="k", **kwargs)


async def _collect(stream: dspex.Stream) -> tuple[list[Any], dspex.Prediction]:
    events = [event async for event in stream]
    final = events.pop()
    assert isinstance(final, dspex.Prediction)
    return events, final


async def _read_into(stream: dspex.Stream, events: list[Any]) -> None:
    """Read ``stream`` into ``events`` until it ends or raises."""
    async for event in stream:
        events.append(event)


def _by_field(events: list[Any]) -> dict[tuple[str, str], tuple[str, list[bool]]]:
    """Per (predictor, field): the text of its chunks and their is_last flags."""
    texts: dict[tuple[str, str], list[str]] = defaultdict(list)
    flags: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for event in events:
        if isinstance(event, dspex.StreamChunk):
            texts[event.predictor, event.field].append(event.chunk)
            flags[event.predictor, event.field].append(event.is_last)
    return {key: ("".join(texts[key]), flags[key]) for key in texts}


@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
@pytest.mark.parametrize("module", ["Predict", "ChainOfThought"])
async def test_native_and_dspy_stream_the_same(module: str, adapter: str) -> None:
    async with (
        ScriptedLM(respond(**VALUES), strict=False) as server,
        Runtime(lm=_lm(server), config=NATIVE_ONLY),
    ):
        ref = await getattr(dspex, module).create("question -> answer", adapter=adapter)
        native = await _collect(ref.stream({"question": "Capital of France?"}))
        dspy = await _collect(ref.stream({"question": "Capital of France?"}, implementation="dspy"))
        bodies = [request.body for request in server.requests]
    (native_events, native_pred), (dspy_events, dspy_pred) = native, dspy
    assert native_pred.implementation == "native"
    assert dspy_pred.implementation == "dspy"
    assert native_pred.to_dict() == dspy_pred.to_dict()
    assert _by_field(native_events) == _by_field(dspy_events)
    fields = _by_field(native_events)
    predictor = "self" if module == "Predict" else "predict"
    assert {field for _, field in fields} == set(native_pred.to_dict())
    for (path, field), (text, flags) in fields.items():
        assert path == predictor
        assert flags[-1] is True
        assert not any(flags[:-1])
        if adapter != "json":  # JSON streams the value's JSON text, quotes included (DSPy)
            assert text == native_pred[field]
    assert bodies[0] == bodies[1]
    assert bodies[0] is not None
    assert (bodies[0]["stream"], bodies[0]["stream_options"]) == (True, {"include_usage": True})
    assert native_pred.usage["total_tokens"] > 0  # from the stream's usage event


async def test_a_dspy_worker_process_streams_the_same_as_native() -> None:
    config = Config(dspy_workers=1, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM(respond(**VALUES), strict=False) as server,
        Runtime(lm=_lm(server), config=config),
    ):
        cot = await dspex.ChainOfThought.create("question -> answer")
        native_events, native_pred = await _collect(cot.stream({"question": "q"}))
        dspy_events, dspy_pred = await _collect(
            cot.stream({"question": "q"}, implementation="dspy")
        )
    assert dspy_pred.implementation == "dspy"
    assert _by_field(native_events) == _by_field(dspy_events)
    assert native_pred.to_dict() == dspy_pred.to_dict()
    assert [e for e in native_events if isinstance(e, dspex.StreamChunk)] == [
        e for e in dspy_events if isinstance(e, dspex.StreamChunk)
    ]


async def test_leaving_a_stream_in_a_worker_process_cancels_its_lm_request() -> None:
    slow = Reply(
        "[[ ## answer ## ]]\n" + "word " * 200 + "\n\n[[ ## completed ## ]]",
        chunk_size=5,
        chunk_delay=0.02,
    )
    config = Config(dspy_workers=1, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM([slow, respond(answer="next")]) as server,
        Runtime(lm=_lm(server), config=config),
    ):
        predict = await dspex.Predict.create("question -> answer", implementation="dspy")
        seen: list[Any] = []
        async with predict.stream({"question": "q"}) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 3:
                    break
        assert all(isinstance(e, dspex.StreamChunk) for e in seen)
        for _ in range(100):
            if server.requests[0].finished_at is not None:
                break
            await asyncio.sleep(0.02)
        assert server.requests[0].disconnected  # the worker's DSPy stopped reading
        assert (await predict.info()).in_flight == 0
        _, pred = await _collect(predict.stream({"question": "q"}))  # the worker serves on
        assert (pred.answer, pred.implementation) == ("next", "dspy")


def _search(query: str) -> str:
    """Look something up."""
    return f"results for {query}"


REACT_STEPS = [
    respond(next_thought="Search first.", next_tool_name="_search", next_tool_args={"query": "x"}),
    respond(next_thought="Done.", next_tool_name="finish", next_tool_args={}),
    respond(reasoning="From the search.", answer="Paris"),
]


@pytest.mark.parametrize("implementation", ["native", "dspy"])
async def test_react_streams_its_steps_and_status_messages(implementation: str) -> None:
    async with (
        ScriptedLM(REACT_STEPS) as server,
        Runtime(lm=_lm(server), config=NATIVE_ONLY),
    ):
        agent = await dspex.ReAct.create("question -> answer", tools=[_search])
        events, pred = await _collect(
            agent.stream({"question": "q"}, implementation=implementation)
        )
    assert pred.answer == "Paris"
    statuses = [e.message for e in events if isinstance(e, dspex.StatusMessage)]
    assert statuses == [
        "Calling tool _search...",
        "Tool calling finished! Querying the LLM with tool calling results...",
    ]
    fields = _by_field(events)
    thoughts, flags = fields["react", "next_thought"]
    assert (thoughts, flags.count(True)) == ("Search first.Done.", 2)  # one per step
    assert fields["extract.predict", "answer"][0] == "Paris"
    # the status messages come between the first step's chunks and the second's
    order = ["status" if isinstance(e, dspex.StatusMessage) else e.predictor for e in events]
    assert order.index("status") > order.index("react")
    assert order.index("extract.predict") > len(order) - 1 - order[::-1].index("status")


def _echo(request: RecordedRequest) -> Reply:
    """Answer with the question of the request, so each stream knows what it must get."""
    question = re.search(r"\[\[ ## question ## \]\]\n(.*)", request.messages[-1]["content"])
    assert question is not None
    return respond(answer=f"echo {question.group(1)}")(request)


async def test_a_hundred_concurrent_streams_never_mix_drop_or_duplicate() -> None:
    """With Config() as a new user leaves it (some calls explore dspy, in worker processes)."""
    async with (
        ScriptedLM(_echo, strict=False) as server,
        Runtime(lm=_lm(server), config=Config()),
    ):
        predict = await dspex.Predict.create("question -> answer")

        async def one(i: int) -> tuple[str, dspex.Prediction]:
            events, pred = await _collect(predict.stream({"question": f"number {i}"}))
            chunks = [e for e in events if isinstance(e, dspex.StreamChunk)]
            assert [c.is_last for c in chunks].count(True) == 1
            assert chunks[-1].is_last
            return "".join(c.chunk for c in chunks), pred

        results = await asyncio.gather(*(one(i) for i in range(100)))
    for i, (text, pred) in enumerate(results):
        assert text == f"echo number {i}"
        assert pred.answer == f"echo number {i}"


async def test_leaving_the_loop_early_cancels_the_lm_request() -> None:
    slow = Reply(
        "[[ ## answer ## ]]\n" + "word " * 200 + "\n\n[[ ## completed ## ]]",
        chunk_size=5,
        chunk_delay=0.02,
    )
    async with (
        ScriptedLM(slow, strict=False) as server,
        Runtime(lm=_lm(server), config=NATIVE_ONLY),
    ):
        predict = await dspex.Predict.create("question -> answer")
        seen = 0
        async for event in predict.stream({"question": "q"}):
            assert isinstance(event, dspex.StreamChunk)
            seen += 1
            if seen == 3:
                break
        gc.collect()  # a plain `async for` that breaks: the stream is garbage, its call cancelled
        for _ in range(100):
            if server.requests[0].finished_at is not None:
                break
            await asyncio.sleep(0.02)
        assert server.requests[0].disconnected
        assert (await predict.info()).in_flight == 0
        # `async with` closes it at once, no garbage collection needed
        async with predict.stream({"question": "q"}) as events:
            async for _ in events:
                break
        assert (await predict.info()).in_flight == 0


async def test_the_deadline_ends_a_stream_with_timeout() -> None:
    slow = Reply("[[ ## answer ## ]]\n" + "x" * 200, chunk_size=2, chunk_delay=0.01)
    async with (
        ScriptedLM(slow, strict=False) as server,
        Runtime(lm=_lm(server), config=NATIVE_ONLY),
    ):
        predict = await dspex.Predict.create("question -> answer")
        chunks: list[Any] = []
        with pytest.raises(Timeout, match=r"timed out after 0\.3 s"):
            await _read_into(predict.stream({"question": "q"}, timeout=0.3), chunks)
        assert chunks  # it streamed until the deadline
        assert (await predict.info()).in_flight == 0


async def test_a_failure_before_the_first_chunk_falls_back_to_dspy() -> None:
    async with (
        ScriptedLM([Status(500), respond(answer="Paris")]) as server,
        Runtime(lm=_lm(server, num_retries=0), config=NATIVE_ONLY),
    ):
        predict = await dspex.Predict.create("question -> answer")
        events, pred = await _collect(predict.stream({"question": "q"}))
    assert pred.implementation == "dspy"
    assert str(pred.fallback_reason).startswith("LMError")
    ((key, (text, flags)),) = _by_field(events).items()  # dspy's chunks only, none of native's
    assert (key, text, flags[-1], any(flags[:-1])) == (("self", "answer"), "Paris", True, False)


async def test_a_failure_after_chunks_ends_the_stream_with_the_error() -> None:
    broken = Reply("[[ ## answer ## ]]\n" + "word " * 20, chunk_size=3, drop_after=12)
    async with (
        ScriptedLM([broken, respond(answer="never")]) as server,
        Runtime(lm=_lm(server), config=NATIVE_ONLY),
    ):
        predict = await dspex.Predict.create("question -> answer")
        chunks: list[Any] = []
        with pytest.raises(LMConnectionError, match="stream broke after"):
            await _read_into(predict.stream({"question": "q"}), chunks)
        assert chunks
        assert all(isinstance(c, dspex.StreamChunk) for c in chunks)
        assert len(server.requests) == 1  # neither retried nor fallen back: no switch mid-stream


async def test_a_reader_that_stops_reading_holds_a_bounded_buffer() -> None:
    """A stream read slower than the LM writes: the call waits for the reader (the LM's
    socket is read no faster), holding at most the stream's buffer."""
    long = Reply("[[ ## answer ## ]]\n" + "abcd" * 20_000, chunk_size=4)
    async with (
        ScriptedLM(long, strict=False) as server,
        Runtime(lm=_lm(server), config=NATIVE_ONLY),
    ):
        predict = await dspex.Predict.create("question -> answer")
        stream = predict.stream({"question": "q"})
        first = await stream.__anext__()
        assert isinstance(first, dspex.StreamChunk)
        await asyncio.sleep(0.3)
        buffered = stream._events._buffer.receiver.statistics().current_buffer_used
        assert 0 < buffered <= BUFFER
        assert (await predict.info()).in_flight == 1  # waiting for the reader, not done
        await stream.aclose()
        assert (await predict.info()).in_flight == 0
        assert server.requests[0].finished_at is not None


async def test_what_cannot_stream_says_so() -> None:
    async with (
        ScriptedLM(respond(answer="x"), strict=False) as server,
        Runtime(lm=_lm(server), config=NATIVE_ONLY),
    ):
        parallel = await dspex.Parallel.create("question -> answer")
        with pytest.raises(ConfigError, match="do not stream"):
            await _collect(parallel.stream({"batch": [{"question": "q"}]}))
        two_step = await dspex.Predict.create(
            "question -> answer", adapter=dspex.TwoStep(lm=_lm(server))
        )
        with pytest.raises(ConfigError, match="TwoStep"):
            await _collect(two_step.stream({"question": "q"}))
        predict = await dspex.Predict.create("question -> answer")
        with pytest.raises(InputError, match="timeout"):
            predict.stream({"question": "q"}, timeout=-1)
        with pytest.raises(InputError, match="missing input"):
            await _collect(predict.stream({"nothing": "q"}))
        # the module serves on
        _, pred = await _collect(predict.stream({"question": "q"}))
        assert pred.answer == "x"


class TwoStage(dspy.Module):
    """A Predict's answer, refined by a ChainOfThought."""

    def __init__(self) -> None:
        super().__init__()
        self.generate = dspy.Predict("question -> answer")
        self.refine = dspy.ChainOfThought("question -> answer")

    def forward(self, question: str) -> Any:
        draft = self.generate(question=question)
        return self.refine(question=f"{question} (draft: {draft.answer})")


@pytest.fixture
async def program_server() -> AsyncIterator[ScriptedLM]:
    async with ScriptedLM(respond(**VALUES), strict=False) as server:
        yield server


async def test_a_wrapped_program_streams_as_dspy_streams_it(program_server: ScriptedLM) -> None:
    async with Runtime(lm=_lm(program_server), config=NATIVE_ONLY):
        program = await dspex.Module.wrap(TwoStage())
        events, pred = await _collect(program.stream({"question": "q"}))

    plain = TwoStage()
    listeners = [
        dspy.streaming.StreamListener(field, predict=p, predict_name=name, allow_reuse=True)
        for name, p in plain.named_predictors()
        for field in p.signature.output_fields
    ]
    streamed = dspy.streamify(plain, stream_listeners=listeners)
    expected: list[Any] = []
    with dspy.context(lm=_lm(program_server).to_dspy(), adapter=dspy.ChatAdapter()):
        async for value in streamed(question="q"):
            expected.append(value)
    final = expected.pop()
    as_dspex = [
        dspex.StreamChunk(v.predict_name, v.signature_field_name, v.chunk, v.is_last_chunk)
        for v in expected
    ]
    assert _by_field(events) == _by_field(as_dspex)
    assert pred.to_dict() == dict(final.items())
