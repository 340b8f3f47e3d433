"""respond(): answers in the format each request asks for, for native and DSPy alike."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import dspy
import pytest

from dspex.backends.native import ChatAdapter, JSONAdapter, XMLAdapter
from dspex.errors import ConfigError
from dspex.signature import Signature
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond
from dspex.testing._respond import requested_outputs

SIG = Signature.parse("question -> answer, confidence: float")


def _request(messages: list[dict[str, str]]) -> RecordedRequest:
    return RecordedRequest(
        0, "POST", "/v1/chat/completions", {}, b"", {"messages": messages}, 0, 0.0
    )


def test_chat_requests_get_sections_that_parse() -> None:
    request = _request(ChatAdapter().format(SIG, (), {"question": "q"}))
    assert requested_outputs(request) == (["answer", "confidence"], "chat")
    reply = respond(answer="Paris", confidence=0.9, unused="x")(request)
    assert isinstance(reply.text, str)
    assert ChatAdapter().parse(SIG, reply.text) == {"answer": "Paris", "confidence": 0.9}
    assert dspy.ChatAdapter().parse(SIG.to_dspy(), reply.text) == {
        "answer": "Paris",
        "confidence": 0.9,
    }


def test_json_requests_get_a_json_object_with_missing_fields_empty() -> None:
    request = _request(JSONAdapter().format(SIG, (), {"question": "q"}))
    assert requested_outputs(request) == (["answer", "confidence"], "json")
    reply = respond(answer="Paris")(request)
    assert isinstance(reply.text, str)
    assert json.loads(reply.text) == {"answer": "Paris", "confidence": ""}


def test_xml_requests_get_elements_that_parse() -> None:
    sig = Signature.parse("question -> answer, scores: list[int]")
    request = _request(XMLAdapter().format(sig, (), {"question": "q"}))
    assert requested_outputs(request) == (["answer", "scores"], "xml")
    reply = respond(answer="Fish & <chips>", scores=[1, 2], unused="x")(request)
    assert isinstance(reply.text, str)
    expected = {"answer": "Fish & <chips>", "scores": [1, 2]}
    assert XMLAdapter().parse(sig, reply.text) == expected
    assert dspy.XMLAdapter().parse(sig.to_dspy(), reply.text) == expected


def test_a_request_that_is_not_dspy_shaped_gets_an_empty_completion_block() -> None:
    reply = respond(answer="x")(_request([{"role": "user", "content": "hi"}]))
    assert reply.text == "[[ ## completed ## ]]"


async def test_latency_delays_the_answer_like_a_reply_latency() -> None:
    async with ScriptedLM(respond(answer="Paris", latency=30)) as lm:
        async with aiohttp.ClientSession() as session:
            body = {"messages": ChatAdapter().format(SIG, (), {"question": "q"})}
            call = asyncio.ensure_future(session.post(f"{lm.base_url}/chat/completions", json=body))
            (request,) = await lm.wait_for_requests(1)  # the script ran when it arrived
            assert isinstance(request.action, Reply)
            assert request.action.latency == 30
            assert "[[ ## answer ## ]]\nParis" in str(request.action.text)
            assert request.finished_at is None  # still waiting to answer
            assert not call.done()
        call.cancel()


def test_latency_must_be_seconds_at_least_zero() -> None:
    for latency in (-1, float("inf"), "1s"):
        with pytest.raises(ConfigError, match=r"respond\.latency must be a finite number"):
            respond(answer="x", latency=latency)  # type: ignore[arg-type]


def test_values_may_come_as_a_dict_for_fields_named_like_options() -> None:
    sig = Signature.parse("question -> latency")
    request = _request(ChatAdapter().format(sig, (), {"question": "q"}))
    reply = respond({"latency": "low"}, latency=0.5)(request)
    assert ChatAdapter().parse(sig, str(reply.text)) == {"latency": "low"}
    assert reply.latency == 0.5
