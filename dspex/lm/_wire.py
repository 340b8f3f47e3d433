"""The chat-completions wire format: request bodies as DSPy's two engines write them (LiteLLM's
and lm15's), replies as Structs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

__all__ = ["Completion", "Message", "Usage"]

# LiteLLM's order of OpenAI parameters in the request body (unknown ones follow, as given).
_ORDER = {
    name: i
    for i, name in enumerate(
        (
            "temperature",
            "top_p",
            "n",
            "stop",
            "max_completion_tokens",
            "max_tokens",
            "modalities",
            "prediction",
            "audio",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "user",
            "reasoning_effort",
            "response_format",
            "seed",
            "tools",
            "tool_choice",
            "logprobs",
            "top_logprobs",
            "parallel_tool_calls",
            "stream",
            "stream_options",
        )
    )
}
_encode = msgspec.json.Encoder().encode


class Message(msgspec.Struct, frozen=True):
    """One chat message; plain ``{"role": ..., "content": ...}`` dicts work too."""

    role: str
    content: str


class Usage(msgspec.Struct, frozen=True):
    """Token counts as the server reported them (zeros when it reported none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


class Completion(msgspec.Struct, frozen=True):
    """One chat completion: a text and a finish reason per choice (``n`` of them), and usage.

    A choice with no content (``null``) has the text ``""``. ``attempts`` counts HTTP requests.
    ``reasonings`` holds each choice's ``reasoning_content`` (the reasoning a reasoning model
    sends besides its text), or is empty when no choice has one; ``tool_calls`` each choice's
    ``tool_calls`` as sent (a list of OpenAI tool calls), or is empty when no choice has any.
    """

    texts: list[str]
    finish_reasons: list[str | None]
    usage: Usage
    model: str
    id: str = ""
    attempts: int = 1
    reasonings: list[str | None] = msgspec.field(default_factory=list)
    tool_calls: list[Any] = msgspec.field(default_factory=list)

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.texts[0]


def params_suffix(params: Mapping[str, Any]) -> bytes:
    """Encode request parameters as the tail of a JSON object (``,"k":v,...}``), LiteLLM's order;
    a parameter set to None is left out, as LiteLLM leaves it out."""
    if any(value is None for value in params.values()):
        params = {k: v for k, v in params.items() if v is not None}
    if not params:
        return b"}"
    last = len(_ORDER)
    ordered = dict(sorted(params.items(), key=lambda item: _ORDER.get(item[0], last)))
    return b"," + _encode(ordered)[1:]


def body_prefix(wire_model: str) -> bytes:
    """The head of a request body, up to the messages: ``{"model":...,"messages":``."""
    return b'{"model":' + _encode(wire_model) + b',"messages":'


# -- replies -----------------------------------------------------------------------------------


class _WireMessage(msgspec.Struct):
    content: str | list[Any] | None = None  # a list of parts: only DSPy's default engine reads it
    reasoning_content: Any = None  # a str from reasoning models; anything else is ignored
    reasoning: Any = None  # what some servers (vLLM, OpenRouter) call it; LiteLLM reads both
    tool_calls: Any = None


class _WireChoice(msgspec.Struct):
    message: _WireMessage
    finish_reason: str | None = None
    index: int = 0


class _WireUsage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = None


class _WireCompletion(msgspec.Struct):
    choices: list[_WireChoice]
    model: str | None = None
    id: str | None = None
    usage: _WireUsage | None = None


_decode_reply = msgspec.json.Decoder(_WireCompletion).decode


def _reasoning_of(message: _WireMessage, lm15: bool) -> str | None:
    """LiteLLM's rule: ``reasoning_content`` when the server sent it (even empty), else
    ``reasoning``; a string only. DSPy's default engine's: the first of them that is not
    empty, as a string."""
    if lm15:
        found = message.reasoning_content or message.reasoning
        return str(found) if found else None
    found = message.reasoning_content
    if found is None:
        found = message.reasoning
    return found if isinstance(found, str) else None


def _text_of(choice: _WireChoice, index: int, lm15: bool) -> str:
    """A choice's text: its content, or (DSPy's default engine) its text parts joined."""
    content = choice.message.content
    if content is None or isinstance(content, str):
        return content or ""
    if not lm15:  # as the reply's type says, for LiteLLM
        raise msgspec.ValidationError(
            f"Expected `str | null`, got `array` - at `$.choices[{index}].message.content`"
        )
    return "".join(
        str(part.get("text") or "")
        for part in content
        if isinstance(part, dict) and part.get("type") == "text"
    )


def decode_completion(
    content: bytes, default_model: str, attempts: int, lm15: bool = False
) -> Completion:
    """Decode a chat.completion, read as DSPy reads it by LiteLLM, or (``lm15``) by its default
    engine; raise ``msgspec.DecodeError`` or ``ValueError`` if unusable."""
    reply = _decode_reply(content)
    if not reply.choices:
        raise ValueError("the reply has no choices")
    choices = reply.choices
    if len(choices) > 1:
        choices = sorted(choices, key=lambda choice: choice.index)
    wire = reply.usage
    if wire is None:
        usage = Usage()
    else:
        prompt = wire.prompt_tokens or 0
        completion = wire.completion_tokens or 0
        total = wire.total_tokens if wire.total_tokens is not None else prompt + completion
        usage = Usage(prompt, completion, total)
    reasonings = [_reasoning_of(choice.message, lm15) for choice in choices]
    tool_calls = [choice.message.tool_calls for choice in choices]
    return Completion(
        reasonings=reasonings if any(reasonings) else [],
        tool_calls=tool_calls if any(tool_calls) else [],
        texts=[_text_of(choice, i, lm15) for i, choice in enumerate(choices)],
        finish_reasons=[choice.finish_reason for choice in choices],
        usage=usage,
        model=reply.model or default_model,
        id=reply.id or "",
        attempts=attempts,
    )


# -- streamed replies --------------------------------------------------------------------------


class _WireDelta(msgspec.Struct):
    content: str | None = None
    reasoning_content: Any = None
    reasoning: Any = None
    tool_calls: Any = None


class _WireChunkChoice(msgspec.Struct):
    delta: _WireDelta | None = None
    finish_reason: str | None = None
    index: int = 0


class _WireChunk(msgspec.Struct):
    choices: list[_WireChunkChoice] = []
    model: str | None = None
    id: str | None = None
    usage: _WireUsage | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_WireChunk).decode


class _Choice:
    """One choice of a streamed reply, as its deltas build it."""

    __slots__ = ("finish_reason", "reasoning", "text", "tools")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None


class StreamedReply:
    """A chat completion sent as ``chat.completion.chunk`` events (``"stream": true``): each
    event's data goes to :meth:`add`, which returns the text its first choice adds (what DSPy's
    stream listeners read); :meth:`completion` is the reply whole, as if sent in one piece."""

    __slots__ = ("_choices", "events", "id", "model", "usage")

    def __init__(self, default_model: str) -> None:
        self._choices: dict[int, _Choice] = {}
        self.model = default_model
        self.id = ""
        self.usage = Usage()
        self.events = 0

    def add(self, data: bytes) -> str | None:
        """Take one event's data (a JSON chunk); raise ``msgspec.DecodeError`` for one that is
        not, and ``ValueError`` for an error event (its message)."""
        chunk = _decode_chunk(data)
        if chunk.error is not None:
            error = chunk.error
            message = error.get("message") if isinstance(error, dict) else error
            raise ValueError(f"the LM sent an error event: {message}")
        self.events += 1
        if chunk.model:
            self.model = chunk.model
        if chunk.id:
            self.id = chunk.id
        if chunk.usage is not None:
            wire = chunk.usage
            prompt = wire.prompt_tokens or 0
            completion = wire.completion_tokens or 0
            total = wire.total_tokens if wire.total_tokens is not None else prompt + completion
            self.usage = Usage(prompt, completion, total)
        first: str | None = None
        for position, wire_choice in enumerate(chunk.choices):
            choice = self._choices.get(wire_choice.index)
            if choice is None:
                choice = self._choices[wire_choice.index] = _Choice()
            if wire_choice.finish_reason is not None:
                choice.finish_reason = wire_choice.finish_reason
            delta = wire_choice.delta
            if delta is None:
                continue
            if delta.content is not None:
                choice.text.append(delta.content)
                if position == 0:
                    first = delta.content
            reasoning = delta.reasoning_content
            if reasoning is None:
                reasoning = delta.reasoning
            if isinstance(reasoning, str):
                choice.reasoning.append(reasoning)
            if isinstance(delta.tool_calls, list):
                _add_tool_calls(choice.tools, delta.tool_calls)
        return first

    def completion(self, attempts: int) -> Completion:
        """The reply whole; ``ValueError`` if it had no choice."""
        if not self._choices:
            raise ValueError("the stream had no choices")
        choices = [self._choices[i] for i in sorted(self._choices)]
        reasonings = [("".join(c.reasoning) if c.reasoning else None) for c in choices]
        tool_calls = [[c.tools[i] for i in sorted(c.tools)] if c.tools else None for c in choices]
        return Completion(
            texts=["".join(c.text) for c in choices],
            finish_reasons=[c.finish_reason for c in choices],
            usage=self.usage,
            model=self.model,
            id=self.id,
            attempts=attempts,
            reasonings=reasonings if any(reasonings) else [],
            tool_calls=tool_calls if any(tool_calls) else [],
        )


def _add_tool_calls(tools: dict[int, dict[str, Any]], deltas: list[Any]) -> None:
    """Join streamed tool call deltas: by index, the id, type and name once, the arguments in
    pieces."""
    for position, delta in enumerate(deltas):
        if not isinstance(delta, dict):
            continue
        index = delta.get("index", position)
        call = tools.get(index)
        if call is None:
            call = tools[index] = {"id": None, "type": "function", "function": {"arguments": ""}}
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                call["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                call["function"]["arguments"] += function["arguments"]


# -- DSPy's default engine (lm15) ------------------------------------------------------------

# The request parameters dspex writes as DSPy 3.4.1's default engine (lm15) writes them, in its
# order; a request with any other goes by DSPy's LiteLLM engine (see dspex.lm._engine).
_LM15_ORDER = {
    name: i
    for i, name in enumerate(
        (
            "max_completion_tokens",
            "temperature",
            "top_p",
            "seed",
            "frequency_penalty",
            "presence_penalty",
            "stop",
        )
    )
}
_LM15_FLOATS = frozenset({"temperature", "top_p", "frequency_penalty", "presence_penalty"})
_LM15_ROLES = frozenset({"system", "user", "assistant"})
_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def lm15_params(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``params`` as lm15 writes them (``max_tokens`` as ``max_completion_tokens``, numbers of
    float fields as floats, ``stop`` as a list, in its order; None values left out), or None
    when one of them is not a parameter dspex writes as lm15 does."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            return None
        if key in ("max_tokens", "max_completion_tokens"):
            if not isinstance(value, int) or value < 1 or "max_completion_tokens" in out:
                return None
            key = "max_completion_tokens"
        elif key in _LM15_FLOATS:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            value = float(value)
        elif key == "seed":
            if not isinstance(value, int):
                return None
        elif key == "stop":
            stops = [value] if isinstance(value, str) else value
            if not (
                isinstance(stops, list)
                and stops
                and all(isinstance(stop, str) and stop for stop in stops)
            ):
                return None
            value = list(stops)
        else:
            return None
        out[key] = value
    return dict(sorted(out.items(), key=lambda item: _LM15_ORDER[item[0]]))


def lm15_suffix(params: Mapping[str, Any]) -> bytes:
    """The tail of an lm15 request body after the messages, for :func:`lm15_params`' output:
    written as lm15 writes JSON (Python's ``json``, compact, not ASCII-escaped)."""
    if not params:
        return b"}"
    return b"," + _json_dumps(params)[1:].encode()


def plain_messages(messages: Sequence[Message | Mapping[str, Any]]) -> bool:
    """Whether every message is a system, user or assistant turn of text only (``role`` and a
    ``content`` string; a system one not empty), which lm15 writes back as it was given."""
    role: Any
    content: Any
    for message in messages:
        if type(message) is Message:
            role, content = message.role, message.content
        elif isinstance(message, Mapping) and len(message) == 2 and next(iter(message)) == "role":
            role, content = message["role"], message.get("content")
        else:
            return False
        if role not in _LM15_ROLES or type(content) is not str:
            return False
        if not content and role == "system":  # DSPy's engine sends those by LiteLLM
            return False
    return True
