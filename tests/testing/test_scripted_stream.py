"""ScriptedLM streams a reply as server-sent events when the request asks for ``stream``: read
with a real HTTP client, and with real DSPy (``dspy.streamify`` and a ``StreamListener``)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from dspex.errors import ConfigError
from dspex.lm import LM
from dspex.testing import Reply, ScriptedLM, respond

ANSWER = "[[ ## answer ## ]]\nThe capital of France is Paris.\n\n[[ ## completed ## ]]"


async def _events(
    server: ScriptedLM, body: dict[str, Any]
) -> tuple[list[Any], str | None, aiohttp.ClientResponse]:
    """POST ``body`` and read the answer as SSE: the decoded events, the content type."""
    events: list[Any] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body) as response,
    ):
        async for line in response.content:
            text = line.decode().strip()
            if text.startswith("data: "):
                data = text[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events, response.headers.get("content-type"), response


def _text(events: list[Any], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event["choices"]
        if choice["index"] == index
    )


async def test_a_stream_request_gets_the_reply_as_chunks_then_done() -> None:
    async with ScriptedLM(Reply("Paris is the capital.", chunk_size=5)) as server:
        body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": True}
        events, content_type, _ = await _events(server, body)
    assert content_type == "text/event-stream"
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert pieces == ["Paris", " is t", "he ca", "pital", "."]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # not asked for


async def test_usage_comes_last_when_stream_options_ask_for_it() -> None:
    reply = Reply(["one", "two"], prompt_tokens=7, completion_tokens=2, reasoning="hm")
    async with ScriptedLM(reply) as server:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "q"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        events, _, _ = await _events(server, body)
    assert (_text(events, 0), _text(events, 1)) == ("one", "two")
    reasoning = [
        c["choices"][0]["delta"].get("reasoning_content") for c in events[:-1] if c["choices"]
    ]
    assert "".join(r for r in reasoning if r) == "hmhm"  # each choice's own
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


async def test_a_stream_can_drop_mid_way() -> None:
    async with ScriptedLM(Reply("abcdefghij", chunk_size=2, drop_after=3)) as server:
        body = {"model": "m", "messages": [], "stream": True}
        with pytest.raises(aiohttp.ClientPayloadError):
            await _events(server, body)
        assert server.requests[0].finished_at is not None


async def test_real_dspy_streams_a_field_from_it() -> None:
    import dspy

    async with ScriptedLM(respond(answer="The capital of France is Paris."), strict=False) as s:
        lm = LM("openai/scripted", api_base=s.base_url, api_key="k").to_dspy()
        listener = dspy.streaming.StreamListener(signature_field_name="answer")
        program = dspy.streamify(dspy.Predict("question -> answer"), stream_listeners=[listener])
        chunks: list[Any] = []
        final = None
        with dspy.context(lm=lm):
            async for event in program(question="Capital of France?"):
                if isinstance(event, dspy.streaming.StreamResponse):
                    chunks.append(event)
                elif isinstance(event, dspy.Prediction):
                    final = event
        await lm.aclose()
    assert final is not None
    assert final.answer == "The capital of France is Paris."
    assert "".join(c.chunk for c in chunks).strip() == final.answer
    assert len(chunks) > 1  # in pieces, not one
    assert chunks[-1].is_last_chunk
    assert {c.signature_field_name for c in chunks} == {"answer"}
    assert s.requests[0].body is not None
    assert s.requests[0].body["stream"] is True


def test_bad_stream_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        Reply("x", chunk_size=0)
    with pytest.raises(ConfigError, match="chunk_delay"):
        Reply("x", chunk_delay=-1)
    with pytest.raises(ConfigError, match="drop_after"):
        Reply("x", drop_after=-1)


async def test_a_non_stream_request_still_gets_one_completion() -> None:
    async with ScriptedLM(Reply(ANSWER, chunk_size=3)) as server:
        body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{server.base_url}/chat/completions", json=body) as response,
        ):
            completion = await response.json()
    assert completion["choices"][0]["message"]["content"] == ANSWER
