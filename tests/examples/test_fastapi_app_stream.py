"""POST /qa/stream of examples/fastapi_app.py under a real uvicorn process (one for the module):
server-sent events as the LM writes the answer, errors, and a client that leaves mid-stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio

from dspex.testing import RecordedRequest, Reply, ScriptedLM, Status, respond
from tests.examples.test_fastapi_app import UVICORN_COMMAND, serving
from tests.helpers import Output

pytestmark = pytest.mark.asyncio(loop_scope="module")

ANSWER = "Paris is the capital of France, on the Seine."
LONG_ANSWER = "Paris. " * 150  # 1,050 characters: 265 chunks, 13 s at SLOW_DELAY
SLOW_DELAY = 0.05  # seconds between the chunks of a reply to a question with "slowly" in it


class WatchedLM(ScriptedLM):
    """A ScriptedLM that records when each client connection closed: ``closed[ident]``, the
    ``time.monotonic()`` of it, for the ``connection`` a recorded request names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: dict[int, float] = {}

    def connection_closed(self, connection: Any) -> None:
        self.closed[connection.ident] = time.monotonic()
        super().connection_closed(connection)


def script(request: RecordedRequest) -> Reply | Status:
    """The answer in the format the request asks for, 4 characters a chunk when streamed; an
    HTTP 400 for a question with "fail" in it, a slow long answer for one with "slowly"."""
    question = request.messages[-1]["content"]
    if "fail" in question:
        return Status(400, message="the scripted LM refuses this question")
    if "slowly" in question:
        reply = respond(answer=LONG_ANSWER)(request)
        return msgspec.structs.replace(reply, chunk_size=4, chunk_delay=SLOW_DELAY)
    return msgspec.structs.replace(respond(answer=ANSWER)(request), chunk_size=4)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served() -> AsyncIterator[tuple[WatchedLM, Output, str]]:
    """The LM, and the app's output and URL: one uvicorn process for every test here."""
    async with WatchedLM(script) as lm, serving(lm, UVICORN_COMMAND) as (output, url):
        yield lm, output, url


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """The server-sent events of ``response`` as they arrive: (event name, decoded JSON data)."""
    name, data = None, None
    async for raw in response.content:  # one line at a time
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif not line and name is not None:
            yield name, data
            name, data = None, None


async def stream(session: aiohttp.ClientSession, url: str, question: str) -> list[tuple[str, Any]]:
    """Every event ``POST /qa/stream`` sends for ``question``, in order."""
    async with session.post(f"{url}/qa/stream", json={"question": question}) as response:
        assert response.status == 200, await response.text()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [event async for event in read_events(response)]


def check_answer(events: list[tuple[str, Any]], answer: str) -> None:
    """``events`` are chunks of the answer, then the prediction: each field's chunks make its
    text, the last of them (only) with is_last."""
    names = [name for name, _ in events]
    assert names == ["chunk"] * (len(events) - 1) + ["prediction"], events
    prediction = events[-1][1]
    assert (prediction["answer"], prediction["fallback"]) == (answer, False)
    assert prediction["implementation"] in ("native", "dspy")
    chunks = [data for _, data in events[:-1]]
    assert all(set(chunk) == {"predictor", "field", "chunk", "is_last"} for chunk in chunks)
    assert {(chunk["predictor"], chunk["field"]) for chunk in chunks} == {("self", "answer")}
    assert len(chunks) > 5, chunks  # streamed in pieces, not in one
    assert "".join(chunk["chunk"] for chunk in chunks) == prediction["answer"]
    assert [chunk["is_last"] for chunk in chunks] == [False] * (len(chunks) - 1) + [True]


async def test_it_streams_the_answer_as_server_sent_events(
    served: tuple[WatchedLM, Output, str],
) -> None:
    lm, _, url = served
    async with aiohttp.ClientSession() as session:
        events = await stream(session, url, "What is the capital of France?")
    check_answer(events, ANSWER)
    assert (lm.requests[-1].body or {}).get("stream") is True  # the LM streamed its reply


async def test_errors_are_an_error_event_or_an_http_status(
    served: tuple[WatchedLM, Output, str],
) -> None:
    _, _, url = served
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/qa/stream", json={"no": "question"}) as response:
            assert response.status == 422, await response.text()  # refused before streaming
        events = await stream(session, url, "Please fail.")
    assert [name for name, _ in events] == ["error"], events
    error = events[0][1]
    assert set(error) == {"error", "detail", "status"}
    assert (error["error"], error["status"]) == ("LMError", 502), error  # as POST /qa maps it


async def test_a_client_that_leaves_mid_stream_cancels_the_lm_request(
    served: tuple[WatchedLM, Output, str],
) -> None:
    lm, output, url = served
    slowly = {"question": "Answer slowly."}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/qa/stream", json=slowly) as response:
            assert response.status == 200
            events = read_events(response)
            first = [await anext(events), await anext(events)]
            response.close()  # hang up, two chunks into a 13 s answer
        left = time.monotonic()
        assert [name for name, _ in first] == ["chunk", "chunk"], first
        request = next(r for r in lm.requests if "slowly" in r.messages[-1]["content"])
        while request.connection not in lm.closed:  # the app hangs up on the LM in turn
            assert time.monotonic() - left < 5.0, "the LM request still runs"
            await asyncio.sleep(0.01)
        # its 13 s reply was cut short: never written to the end, or stopped when the app hung up
        assert lm.closed[request.connection] - request.started_at < 5.0
        ended = request.finished_at
        assert ended is None or ended - request.started_at < 5.0, ended - request.started_at
        async with session.get(f"{url}/stats") as response:
            assert (await response.json())["qa"]["in_flight"] == 0
        check_answer(await stream(session, url, "And after that?"), ANSWER)  # still serving
    assert "Traceback" not in output.text, output.text
