"""What a :class:`~dspex.testing.ScriptedLM` does with one request: the script actions."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec

from dspex.errors import ConfigError, ScriptError

__all__ = [
    "Action",
    "Drop",
    "Hang",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Script",
    "Status",
]


def check_latency(name: str, latency: float) -> None:
    """Raise :class:`~dspex.errors.ConfigError` unless ``latency`` is finite seconds >= 0."""
    if not (isinstance(latency, (int, float)) and math.isfinite(latency) and latency >= 0):
        raise ConfigError(
            f"{name}.latency must be a finite number of seconds >= 0, got {latency!r}"
        )


class Reply(msgspec.Struct, frozen=True):
    """Answer with a chat.completion whose choices hold ``text``.

    ``text`` may be a list of strings, one choice each. Otherwise the reply has ``n`` choices, or
    as many as the request's ``n`` asks for when ``n`` is None. Token counts are estimated from
    the text (about 4 characters per token) unless given. ``latency`` delays the answer (seconds).

    A request with ``"stream": true`` gets the reply as server-sent events, as OpenAI streams
    it: the text in pieces of ``chunk_size`` characters, ``chunk_delay`` seconds apart (after
    ``latency``), a usage chunk when ``stream_options.include_usage`` asks for one; with
    ``drop_after`` the connection closes after that many events, mid-stream.
    ``reasoning`` is sent as each choice's ``reasoning_content``, as reasoning models send
    their own reasoning, and ``tool_calls`` (OpenAI's shape: ``{"id", "type": "function",
    "function": {"name", "arguments"}}``) as each choice's ``tool_calls``.
    """

    text: str | Sequence[str] = ""
    latency: float = 0.0
    n: int | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    chunk_size: int = 4
    chunk_delay: float = 0.0
    drop_after: int | None = None

    def __post_init__(self) -> None:
        check_latency("Reply", self.latency)
        delay = self.chunk_delay
        if not (isinstance(delay, (int, float)) and math.isfinite(delay) and delay >= 0):
            raise ConfigError(f"Reply.chunk_delay must be seconds >= 0, got {delay!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ConfigError(f"Reply.chunk_size must be an int >= 1, got {self.chunk_size!r}")
        if self.drop_after is not None and (
            not isinstance(self.drop_after, int) or self.drop_after < 0
        ):
            raise ConfigError(
                f"Reply.drop_after must be None or an int >= 0, got {self.drop_after!r}"
            )
        if self.n is not None and (not isinstance(self.n, int) or self.n < 1):
            raise ConfigError(f"Reply.n must be an int >= 1 or None, got {self.n!r}")
        if not isinstance(self.text, str):
            if not self.text or not all(isinstance(t, str) for t in self.text):
                raise ConfigError("Reply.text must be a string or a non-empty list of strings")
            if self.n is not None and self.n != len(self.text):
                raise ConfigError(f"Reply got {len(self.text)} texts but n={self.n}")


class Status(msgspec.Struct, frozen=True):
    """Answer with HTTP ``code`` and an OpenAI-style error body.

    ``retry_after`` sets the ``Retry-After`` header (seconds, or an HTTP date string). ``body``
    replaces the default JSON error body verbatim.
    """

    code: int
    retry_after: float | str | None = None
    message: str | None = None
    body: str | None = None
    latency: float = 0.0

    def __post_init__(self) -> None:
        check_latency("Status", self.latency)
        if not isinstance(self.code, int) or not 100 <= self.code <= 599 or 101 <= self.code < 200:
            raise ConfigError(
                f"Status.code must be an HTTP status 100 or 200-599, got {self.code!r}"
            )


class Malformed(msgspec.Struct, frozen=True):
    """Answer with a body a client cannot use: not JSON by default.

    ``Malformed('{"object": "chat.completion"}')`` is JSON without ``choices``.
    """

    body: str = "this is not JSON"
    status: int = 200
    content_type: str = "application/json"
    latency: float = 0.0

    def __post_init__(self) -> None:
        check_latency("Malformed", self.latency)


class Drop(msgspec.Struct, frozen=True):
    """Close the connection without answering (after ``latency`` seconds)."""

    latency: float = 0.0

    def __post_init__(self) -> None:
        check_latency("Drop", self.latency)


class Hang(msgspec.Struct, frozen=True):
    """Never answer: hold the request until the client gives up or the server stops."""


Action = Reply | Status | Malformed | Drop | Hang
"""One scripted answer."""

ACTION_TYPES = (Reply, Status, Malformed, Drop, Hang)


class RecordedRequest(msgspec.Struct):
    """One request the server received, in arrival order.

    ``headers`` have lower-case names. ``body`` is the parsed JSON object (None when the body is
    empty or not a JSON object). Times are ``time.monotonic()`` seconds: ``started_at`` when the
    request was read, ``finished_at`` when the answer was written or the connection dropped (None
    while pending or for a hang). ``action`` is what the script answered with (None for
    ``GET /v1/models`` and unknown paths). ``disconnected``: the client closed the connection
    while its answer was streaming (the stream stopped then, at ``finished_at``).
    """

    index: int
    method: str
    path: str
    headers: dict[str, str]
    content: bytes
    body: dict[str, Any] | None
    connection: int
    started_at: float
    finished_at: float | None = None
    action: Action | None = None
    disconnected: bool = False

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages`` (empty when absent)."""
        messages = (self.body or {}).get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def model(self) -> str | None:
        """The request's ``model`` field."""
        model = (self.body or {}).get("model")
        return model if isinstance(model, str) else None


ActionLike = Action | str
"""An action, or a string as shorthand for ``Reply(text)``."""

Step = ActionLike | Callable[[RecordedRequest], ActionLike | Awaitable[ActionLike]]
"""How a script answers one request: an action, a reply text, or a callable ``request -> action``
(which may return an awaitable), such as :func:`~dspex.testing.respond`'s."""

Script = Step | Iterable[Step]
"""A script: one step for every request, or steps used in order, one per request."""


def check_step(step: object, index: int | None = None) -> Step:
    """``step``, if it is one; else :class:`~dspex.errors.ScriptError` naming it (and ``index``,
    its position in the script)."""
    if isinstance(step, (str, *ACTION_TYPES)) or callable(step):
        return step
    where = "the script" if index is None else f"script item #{index}"
    raise ScriptError(
        f"{where} is {step!r}; expected a reply text, Reply, Status, Malformed, Drop, Hang or "
        f"a callable request -> action such as respond(...)"
    )
