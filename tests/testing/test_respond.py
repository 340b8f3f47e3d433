"""respond(): answers in the format each request asks for, for native and DSPy alike."""

from __future__ import annotations

import json

import dspy

from dspex.backends.native import ChatAdapter, JSONAdapter
from dspex.signature import Signature
from dspex.testing import RecordedRequest, respond
from dspex.testing._respond import requested_outputs

SIG = Signature.parse("question -> answer, confidence: float")


def _request(messages: list[dict[str, str]]) -> RecordedRequest:
    return RecordedRequest(
        0, "POST", "/v1/chat/completions", {}, b"", {"messages": messages}, 0, 0.0
    )


def test_chat_requests_get_sections_that_parse() -> None:
    request = _request(ChatAdapter().format(SIG, (), {"question": "q"}))
    assert requested_outputs(request) == (["answer", "confidence"], False)
    reply = respond(answer="Paris", confidence=0.9, unused="x")(request)
    assert isinstance(reply.text, str)
    assert ChatAdapter().parse(SIG, reply.text) == {"answer": "Paris", "confidence": 0.9}
    assert dspy.ChatAdapter().parse(SIG.to_dspy(), reply.text) == {
        "answer": "Paris",
        "confidence": 0.9,
    }


def test_json_requests_get_a_json_object_with_missing_fields_empty() -> None:
    request = _request(JSONAdapter().format(SIG, (), {"question": "q"}))
    assert requested_outputs(request) == (["answer", "confidence"], True)
    reply = respond(answer="Paris")(request)
    assert isinstance(reply.text, str)
    assert json.loads(reply.text) == {"answer": "Paris", "confidence": ""}


def test_a_request_that_is_not_dspy_shaped_gets_an_empty_completion_block() -> None:
    reply = respond(answer="x")(_request([{"role": "user", "content": "hi"}]))
    assert reply.text == "[[ ## completed ## ]]"
