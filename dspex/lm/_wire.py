"""The chat-completions wire format: request bodies as LiteLLM writes them, replies as Structs."""

from __future__ import annotations

from collections.abc import Mapping
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
    content: str | None = None
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


def _reasoning_of(message: _WireMessage) -> Any:
    """LiteLLM's rule: ``reasoning_content`` when the server sent it (even empty), else
    ``reasoning``."""
    found = message.reasoning_content
    return found if found is not None else message.reasoning


def decode_completion(content: bytes, default_model: str, attempts: int) -> Completion:
    """Decode a chat.completion; raise ``msgspec.DecodeError`` or ``ValueError`` if unusable."""
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
    reasonings = [
        reasoning if isinstance(reasoning := _reasoning_of(choice.message), str) else None
        for choice in choices
    ]
    tool_calls = [choice.message.tool_calls for choice in choices]
    return Completion(
        reasonings=reasonings if any(reasonings) else [],
        tool_calls=tool_calls if any(tool_calls) else [],
        texts=[choice.message.content or "" for choice in choices],
        finish_reasons=[choice.finish_reason for choice in choices],
        usage=usage,
        model=reply.model or default_model,
        id=reply.id or "",
        attempts=attempts,
    )
