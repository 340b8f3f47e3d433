"""End to end against real DSPy: what DSPy 3.4.1 puts on the wire equals what the native adapters
produce, including the ChatAdapter -> JSONAdapter fallback and JSONAdapter's response_format."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from dspex.backends.native import Adapter, ChatAdapter, JSONAdapter, ResponseFormatSupport
from dspex.errors import ParseError
from dspex.signature import Signature

from .corpus import QA


class _Stub:
    """A minimal OpenAI-compatible chat endpoint that records request bodies and replies from a
    script (one choice per request)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                text = stub.replies.pop(0) if stub.replies else ""
                data = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def script(self, *replies: str) -> None:
        self.requests.clear()
        self.replies[:] = list(replies)


@pytest.fixture(scope="module")
def stub() -> Iterator[_Stub]:
    server = _Stub()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=5)


def _lm(stub: _Stub, model: str) -> Any:
    return dspy.LM(model, api_base=stub.url, api_key="test", cache=False)


def _native_call(
    sig: Signature,
    demos: list[dict[str, Any]],
    inputs: dict[str, Any],
    support: ResponseFormatSupport,
    replies: list[str],
) -> tuple[list[tuple[list[dict[str, Any]], dict[str, Any]]], Any]:
    """What a native Predict does: (messages, request kwargs) per LM call, and the result."""
    sent: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
    adapter: Adapter = ChatAdapter()
    while True:
        sent.append((adapter.format(sig, demos, inputs), adapter.request_kwargs(sig, support)))
        try:
            return sent, adapter.parse_completions(sig, [replies[len(sent) - 1]])
        except ParseError as err:
            fallback = adapter.fallback_adapter(err)
            if fallback is None:
                return sent, err
            adapter = fallback


@pytest.mark.parametrize("model", ["openai/local-model", "openai/gpt-4o-mini"])
@pytest.mark.parametrize(
    ("replies", "succeeds"),
    [
        (
            ["[[ ## answer ## ]]\nBerlin\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"],
            True,
        ),
        (["Berlin, I think.", '{"answer": "Berlin", "confidence": 0.9}'], True),
        (["", '```json\n{"answer": "Berlin", "confidence": "0.8"}\n```'], True),
        (["nothing", "still nothing"], False),
    ],
    ids=["chat-ok", "json-fallback", "empty-then-json", "both-fail"],
)
@pytest.mark.parametrize("cot", [False, True], ids=["predict", "cot"])
def test_dspy_wire_equals_native(
    stub: _Stub, model: str, replies: list[str], succeeds: bool, cot: bool
) -> None:
    demos = [
        {
            "context": "Paris is in France.",
            "question": "Capital?",
            "answer": "Paris",
            "confidence": 0.99,
        }
    ]
    inputs = {
        "context": "Berlin is the capital of Germany.",
        "question": "What is the capital of Germany?",
    }
    if cot:
        replies = [
            "[[ ## reasoning ## ]]\nIt says so.\n" + r if r.startswith("[[") else r for r in replies
        ]
        replies = [r.replace('{"answer"', '{"reasoning": "It says so.", "answer"') for r in replies]
    lm = _lm(stub, model)
    module = dspy.ChainOfThought(QA) if cot else dspy.Predict(QA)
    predictor = module.predict if cot else module
    predictor.demos = demos
    stub.script(*replies)
    with dspy.context(lm=lm):
        try:
            result: Any = module(**inputs).toDict()
        except AdapterParseError as exc:
            result = exc

    sig = Signature.from_dspy(QA)
    sig = sig.with_reasoning() if cot else sig
    sent, native = _native_call(sig, demos, inputs, ResponseFormatSupport.of_dspy_lm(lm), replies)
    assert len(sent) == len(stub.requests)
    for (messages, kwargs), request in zip(sent, stub.requests, strict=True):
        assert request["messages"] == messages
        assert request.get("response_format") == kwargs.get("response_format")
    if succeeds:
        assert native == [result]
    else:
        assert isinstance(result, AdapterParseError)
        assert isinstance(native, ParseError)
        assert native.adapter_name == result.adapter_name == "JSONAdapter"


def test_open_ended_dict_output_asks_for_json_object(stub: _Stub) -> None:
    lm = _lm(stub, "openai/gpt-4o-mini")
    stub.script("junk", '{"answer": {"a": 1}}')
    with dspy.context(lm=lm):
        dspy.Predict("question -> answer: dict[str, int]")(question="q")
    assert stub.requests[1]["response_format"] == {"type": "json_object"}
    support = ResponseFormatSupport.of_dspy_lm(lm)
    assert JSONAdapter().request_kwargs("question -> answer: dict[str, int]", support) == {
        "response_format": {"type": "json_object"}
    }
