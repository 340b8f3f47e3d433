"""Response bodies shaped like OpenAI's: chat.completion objects, model lists and errors."""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec

from dspex.testing._actions import Reply, Status

_encode = msgspec.json.Encoder().encode
_ids = itertools.count(1)


class _Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _Choice(msgspec.Struct):
    index: int
    message: _Message
    finish_reason: str
    logprobs: None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class _ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[_Choice]
    usage: _Usage
    system_fingerprint: str = "fp_dspex_scripted"


def estimate_tokens(text: str) -> int:
    """A plausible token count: about four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


def _prompt_tokens(body: dict[str, Any] | None) -> int:
    # OpenAI's cookbook count: 3 tokens of framing per message plus its content, 3 to prime.
    total = 3
    for message in (body or {}).get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        total += 3 + (estimate_tokens(content) if isinstance(content, str) else 0)
    return total


def _texts(reply: Reply, body: dict[str, Any] | None) -> list[str]:
    if isinstance(reply.text, str):
        wanted = reply.n if reply.n is not None else (body or {}).get("n", 1)
        count = wanted if isinstance(wanted, int) and wanted >= 1 else 1
        return [reply.text] * count
    return list(reply.text)


def _usage(reply: Reply, body: dict[str, Any] | None, texts: list[str]) -> _Usage:
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else _prompt_tokens(body)
    completion = reply.completion_tokens
    if completion is None:
        completion = sum(estimate_tokens(text) for text in texts)
    return _Usage(prompt, completion, prompt + completion)


def _model(body: dict[str, Any] | None, default_model: str) -> str:
    model = (body or {}).get("model")
    return model if isinstance(model, str) else default_model


def chat_completion(reply: Reply, body: dict[str, Any] | None, default_model: str) -> bytes:
    """Encode a chat.completion answering ``body`` with ``reply``."""
    texts = _texts(reply, body)
    choices = [
        _Choice(
            index=i,
            message=_Message("assistant", text, reply.reasoning, reply.tool_calls),
            finish_reason=reply.finish_reason,
        )
        for i, text in enumerate(texts)
    ]
    return _encode(
        _ChatCompletion(
            id=f"chatcmpl-scripted{next(_ids):08x}",
            created=int(time.time()),
            model=_model(body, default_model),
            choices=choices,
            usage=_usage(reply, body, texts),
        )
    )


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def chat_completion_events(
    reply: Reply, body: dict[str, Any] | None, default_model: str
) -> list[bytes]:
    """The server-sent events that stream ``reply`` as OpenAI does for ``"stream": true``:
    ``chat.completion.chunk`` objects (the role first; per choice, its reasoning then its text
    in pieces of ``reply.chunk_size`` characters, its tool calls whole; the finish reason
    last), a usage chunk if ``stream_options.include_usage`` asks for one, then ``[DONE]``.
    Each event is ``data: ...`` and a blank line."""
    texts = _texts(reply, body)
    head = {
        "id": f"chatcmpl-scripted{next(_ids):08x}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": _model(body, default_model),
        "system_fingerprint": "fp_dspex_scripted",
    }

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    events: list[dict[str, Any]] = []
    for index, text in enumerate(texts):
        events.append(chunk(index, {"role": "assistant", "content": ""}))
        for piece in _pieces(reply.reasoning or "", reply.chunk_size):
            events.append(chunk(index, {"reasoning_content": piece}))
        for piece in _pieces(text, reply.chunk_size):
            events.append(chunk(index, {"content": piece}))
        if reply.tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(reply.tool_calls)]
            events.append(chunk(index, {"tool_calls": calls}))
        events.append(chunk(index, {}, reply.finish_reason))
    options = (body or {}).get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append({**head, "choices": [], "usage": _usage(reply, body, texts)})
    out = [b"data: " + _encode(event) + b"\n\n" for event in events]
    out.append(b"data: [DONE]\n\n")
    return out


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


def error_body(code: int, message: str) -> bytes:
    """An OpenAI-style error object."""
    kind = _ERROR_TYPES.get(code, "server_error" if code >= 500 else "invalid_request_error")
    return _encode({"error": {"message": message, "type": kind, "param": None, "code": None}})


def status_body(status: Status) -> bytes:
    """The body of a scripted :class:`Status` answer."""
    if status.body is not None:
        return status.body.encode()
    return error_body(status.code, status.message or f"scripted HTTP {status.code}")


def model_list(model: str) -> bytes:
    """The ``GET /v1/models`` answer listing the one scripted model."""
    entry = {"id": model, "object": "model", "created": 0, "owned_by": "dspex"}
    return _encode({"object": "list", "data": [entry]})
