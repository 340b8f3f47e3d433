"""``LMClient``: the native async chat-completions client (aiohttp, one pool per owner)."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import msgspec
from opentelemetry.trace import SpanKind, StatusCode

from dspex import telemetry
from dspex.cache._cache import CALL_CACHE, Claims, key_frame, key_of_parts
from dspex.errors import ConfigError, LMConnectionError, LMError, LMTimeout
from dspex.lm._config import LM, api_key_of, is_reasoning_model, redact
from dspex.lm._engine import by_lm15, lm15_request
from dspex.lm._litellm_catalog import system_as_user
from dspex.lm._prices import price_of
from dspex.lm._wire import (
    Completion,
    Message,
    StreamedReply,
    Usage,
    body_prefix,
    decode_completion,
    lm15_params,
    lm15_suffix,
    params_suffix,
    plain_messages,
)

__all__ = ["CALL_DEADLINE", "CALL_SPEND", "LMClient", "RetryPolicy"]

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger("dspex.lm")


def _http() -> Any:
    """aiohttp, imported on first use: it costs ~0.14 s, which ``import dspex`` need not pay."""
    import aiohttp

    return aiohttp


_C = TypeVar("_C", bound="LMClient")
_encode = msgspec.json.Encoder().encode
_EXCERPT = 500
_CACHE_SIZE = 256
# the decoded completions of the last replies hit, up to this many and this size each (see
# LMClient._cached): 512 KB of replies, and their completions, at most
_HIT_MEMO_SIZE = 64
_HIT_MEMO_BYTES = 8 * 1024
_DEFAULT_BASE = "https://api.openai.com/v1"
_USER_AGENT = "dspex/0.1.0"
_STREAM = {"stream": True, "stream_options": {"include_usage": True}}

#: The event loop time by which the current call must be answered, or None: set by the module
#: actor in each call's task. The client waits for no retry that would start after it.
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "dspex_call_deadline", default=None
)


class Spending(Protocol):
    """A call's LM use under a budget (``dspex._budget.CallSpend``)."""

    def before_request(self) -> None:
        """Raise BudgetExceeded if the next request must not be sent."""
        ...

    def add(self, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        """Count a request's tokens and cost (None: the model has no price)."""
        ...


#: The current call's LM use, when a budget applies: set by the module actor in each call's
#: task; the client checks it before each request and counts each completion in it.
CALL_SPEND: contextvars.ContextVar[Spending | None] = contextvars.ContextVar(
    "dspex_call_spend", default=None
)


class RetryPolicy(msgspec.Struct, frozen=True):
    """How the client waits between attempts; how many attempts is ``LM.num_retries``.

    The n-th retry waits ``min(max_delay, initial_delay * multiplier**n)``, shortened by up to
    ``jitter`` (a fraction) at random, unless the server sent ``Retry-After`` (seconds or an HTTP
    date; ``retry-after-ms`` too): then exactly that, capped at ``max_retry_after``. Retried:
    connection errors, HTTP 408, 429 and 5xx, and timeouts when ``retry_timeouts``. A retry
    that would start after the call's deadline is not waited for: the error is raised at once.
    """

    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    retry_timeouts: bool = True

    def __post_init__(self) -> None:
        for name in ("initial_delay", "multiplier", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"RetryPolicy.{name} must be a number >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter!r}")

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        delay = min(self.max_delay, self.initial_delay * self.multiplier**retry)
        return delay * (1.0 - self.jitter * random.random())


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's retry hint in seconds (``retry-after-ms``, then ``Retry-After``), if valid."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000
        except ValueError:
            seconds = -1.0
        if 0 <= seconds < float("inf"):
            return seconds
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        now = datetime.datetime.now(when.tzinfo or datetime.timezone.utc)
        return max(0.0, (when - now).total_seconds())
    return seconds if 0 <= seconds < float("inf") else None


class _Prepared:
    """Everything about one LM that does not change per call, computed once."""

    __slots__ = (
        "headers",
        "key_frame",
        "lm",
        "lm15",
        "lm15_key_frame",
        "lm15_params",
        "lm15_suffix",
        "max_tokens_key",
        "params",
        "prefix",
        "secret",
        "span_attributes",
        "span_name",
        "suffix",
        "system_as_user",
        "timeout",
        "url",
    )

    def __init__(self, lm: LM) -> None:
        if lm.provider != "openai":
            raise ConfigError(
                f"the native LM client speaks the OpenAI chat-completions API; use "
                f"'openai/<name>' with api_base for {lm.model!r}, or the dspy implementation"
            )
        self.lm = lm
        base = lm.api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")
        self.url = (base or _DEFAULT_BASE).rstrip("/") + "/chat/completions"
        self.secret = api_key_of(lm)
        self.headers = {"Content-Type": "application/json"}
        if self.secret:
            self.headers["Authorization"] = f"Bearer {self.secret}"
        # DSPy sends OpenAI reasoning models max_completion_tokens, all others max_tokens.
        reasoning = is_reasoning_model(lm.model)
        self.max_tokens_key = "max_completion_tokens" if reasoning else "max_tokens"
        # LiteLLM sends an o-series model's system messages as user messages (o3, o4-mini)
        self.system_as_user = system_as_user(lm.wire_model)
        self.params: dict[str, Any] = {}
        if lm.temperature is not None:
            self.params["temperature"] = lm.temperature
        if lm.max_tokens is not None:
            self.params[self.max_tokens_key] = lm.max_tokens
        self.params.update(lm.extra)
        self.prefix = body_prefix(lm.wire_model)
        self.suffix = params_suffix(self.params)
        self.key_frame = key_frame(lm.wire_model, self.params)
        # requests that go by DSPy's default engine (see dspex.lm._engine) have a body of its own
        self.lm15 = by_lm15(lm)
        self.lm15_params = lm15_params(self.params) if self.lm15 else None
        self.lm15_suffix = b""
        self.lm15_key_frame = self.key_frame
        if self.lm15_params is not None:
            self.lm15_suffix = lm15_suffix(self.lm15_params)
            self.lm15_key_frame = key_frame(lm.wire_model, self.lm15_params)
        self.timeout = _http().ClientTimeout(total=lm.timeout)
        url = urlsplit(self.url)
        self.span_name = f"chat {lm.wire_model}"
        self.span_attributes: dict[str, Any] = {
            telemetry.GEN_AI_OPERATION: "chat",
            telemetry.GEN_AI_PROVIDER: "openai",
            telemetry.GEN_AI_REQUEST_MODEL: lm.wire_model,
            telemetry.SERVER_ADDRESS: url.hostname or "",
            telemetry.SERVER_PORT: url.port or 0,
        }
        if lm.temperature is not None:
            self.span_attributes[telemetry.GEN_AI_REQUEST_TEMPERATURE] = lm.temperature
        if lm.max_tokens is not None:
            self.span_attributes[telemetry.GEN_AI_REQUEST_MAX_TOKENS] = lm.max_tokens

    def excerpt(self, content: bytes) -> str:
        """The start of a reply body, for an error, with the API key masked."""
        return redact(content[:_EXCERPT].decode("utf-8", "replace"), self.secret)


def _error_code(content: bytes) -> str | None:
    """The ``error.code`` of an OpenAI-style error body, as text, if it has one."""
    try:
        error = msgspec.json.decode(content).get("error")
        code = error.get("code") if isinstance(error, dict) else None
    except (msgspec.DecodeError, AttributeError):
        return None
    return str(code) if code else None


def _error_detail(content: bytes) -> str:
    try:
        error = msgspec.json.decode(content).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (msgspec.DecodeError, AttributeError):
        return ""
    if not isinstance(message, str) or not message:
        return ""
    return f": {message[:_EXCERPT]}" + ("..." if len(message) > _EXCERPT else "")


def as_litellm_sends(
    messages: Sequence[Message | Mapping[str, Any]], system_as_user: bool
) -> Sequence[Message | Mapping[str, Any]]:
    """``messages`` as LiteLLM puts them in the body: a key set to None left out (an assistant
    turn of tool calls only has no ``content``), and for the models that need it
    (``system_as_user``) a system message sent as ``{"content": ..., "role": "user"}``. The
    same list when nothing changes (the common case: one scan, no copy)."""
    changed = False
    for message in messages:
        if type(message) is dict and (
            None in message.values() or (system_as_user and message.get("role") == "system")
        ):
            changed = True
            break
    if not changed:
        return messages
    out: list[Message | Mapping[str, Any]] = []
    for message in messages:
        if type(message) is dict:
            if system_as_user and message.get("role") == "system":
                message = {"content": message.get("content"), "role": "user"}
            if None in message.values():
                message = {k: v for k, v in message.items() if v is not None}
        out.append(message)
    return out


class LMClient:
    """An async OpenAI chat-completions client with one shared connection pool.

    Create one per owner (a runtime, a service), use it for any number of LMs and concurrent
    calls, and close it (``async with`` or :meth:`aclose`). It retries connection errors, timeouts,
    HTTP 408, 429 and 5xx ``LM.num_retries`` times with backoff (see :class:`RetryPolicy`), and
    raises :class:`~dspex.errors.LMError` (``.status``, ``.body``), ``LMTimeout`` or
    ``LMConnectionError``. :attr:`usage` sums the tokens of every completion. Use it from one
    event loop.

    With a ``cache`` (a runtime's :class:`~dspex.cache.ResponseCache`), a request whose LM has
    ``cache=True`` (unless the call's ``CALL_CACHE`` says otherwise) is answered from it when
    an identical one was answered before (with no usage: nothing was sent), or waits for an
    identical one in flight; a streamed request is neither answered from it nor kept.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        retry: RetryPolicy | None = None,
        cache: Claims | None = None,
    ) -> None:
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigError(f"max_connections must be an int >= 1, got {max_connections!r}")
        self.max_connections = max_connections
        self.retry = retry if retry is not None else RetryPolicy()
        self.cache = cache
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._prepared: dict[int, _Prepared] = {}
        self._decoded: dict[bytes, tuple[bytes, Completion]] = {}  # see _cached
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._total_tokens = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<LMClient {state} max_connections={self.max_connections}>"

    @property
    def usage(self) -> Usage:
        """Tokens used by every completion this client returned."""
        return Usage(self._prompt_tokens, self._completion_tokens, self._total_tokens)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _session_or_open(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closed:
                raise RuntimeError("this LMClient is closed")
            http = _http()
            connector = http.TCPConnector(limit=self.max_connections, limit_per_host=0)
            headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
            self._session = http.ClientSession(connector=connector, headers=headers)
        return self._session

    def _prepare(self, lm: LM) -> _Prepared:
        prepared = self._prepared.get(id(lm))
        if prepared is None or prepared.lm is not lm:
            if len(self._prepared) >= _CACHE_SIZE:
                self._prepared.clear()
            prepared = self._prepared[id(lm)] = _Prepared(lm)
        return prepared

    async def complete(
        self,
        lm: LM,
        messages: Sequence[Message | Mapping[str, Any]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        n: int | None = None,
        timeout: float | None = None,
        extra: Mapping[str, Any] | None = None,
        on_text: Callable[[str], Awaitable[None]] | None = None,
    ) -> Completion:
        """Ask ``lm`` for a chat completion of ``messages``.

        ``temperature``, ``max_tokens``, ``n``, ``timeout`` (seconds per attempt) and ``extra``
        request fields override the LM's settings for this call; None keeps them. With
        ``on_text`` the reply is streamed (``"stream": true``, usage asked for with
        ``stream_options``, as DSPy asks): each piece of its first choice's text is awaited
        with it as it arrives (the socket is read no faster), and the completion returned is
        the reply whole. A stream that breaks after a piece was given is not retried.
        """
        session = self._session_or_open()
        prepared = self._prepare(lm)
        params: dict[str, Any] | None = None
        if on_text is not None:
            extra = {**(extra or {}), **_STREAM}
        if temperature is not None or max_tokens is not None or n is not None or extra:
            params = dict(prepared.params)
            if temperature is not None:
                params["temperature"] = temperature
            if max_tokens is not None:
                params[prepared.max_tokens_key] = max_tokens
            if n is not None:
                params["n"] = n
            if extra:
                params.update(extra)
        # the body as DSPy's engine for this request writes it (see dspex.lm._engine)
        written = None
        if prepared.lm15:
            if params is not None:
                written = lm15_request(params, messages)
            elif prepared.lm15_params is not None and plain_messages(messages):
                written = prepared.lm15_params
        if written is not None:
            suffix, frame = prepared.lm15_suffix, prepared.lm15_key_frame
            if params is not None:
                suffix, params = lm15_suffix(written), written
        else:
            suffix, frame = prepared.suffix, prepared.key_frame
            if params is not None:
                suffix = params_suffix(params)
            messages = as_litellm_sends(messages, prepared.system_as_user)
        try:
            body = prepared.prefix + _encode(messages) + suffix
        except (TypeError, msgspec.EncodeError) as exc:
            raise LMError(f"could not encode the request to {lm.model}: {exc}") from exc
        client_timeout = prepared.timeout
        if timeout is not None:
            client_timeout = _http().ClientTimeout(total=timeout)
        key = None
        claimed = False
        if self.cache is not None and on_text is None:
            use = CALL_CACHE.get()
            if lm.cache if use is None or use.cache is None else use.cache:
                if params is not None:  # the parameters as written
                    frame = key_frame(lm.wire_model, params)
                key = key_of_parts(frame, messages, None if use is None else use.rollout_id)
                if use is None or not use.refresh:
                    reply = await self.cache.claim(key)
                    if reply is not None:
                        return self._cached(prepared, key, reply, written is not None)
                    claimed = True
        spend = CALL_SPEND.get()
        content: bytes | None = None
        try:
            if spend is not None:
                spend.before_request()  # BudgetExceeded: nothing is sent
            completion, content = await self._request(
                session,
                prepared,
                body,
                client_timeout,
                on_text,
                temperature,
                max_tokens,
                key,
                written is not None,
            )
        finally:
            if key is not None and (claimed or content is not None):
                assert self.cache is not None
                self.cache.fill(key, content)  # None: nothing to keep (waiters send their own)
        usage = completion.usage
        self._prompt_tokens += usage.prompt_tokens
        self._completion_tokens += usage.completion_tokens
        self._total_tokens += usage.total_tokens
        if spend is not None:
            price = price_of(lm.model)
            prompt, output = usage.prompt_tokens, usage.completion_tokens
            spend.add(prompt, output, price.of(prompt, output) if price is not None else None)
        return completion

    def _cached(self, prepared: _Prepared, key: bytes, reply: bytes, lm15: bool) -> Completion:
        """A completion from the cache: no request, so no usage (as DSPy reports a hit). The
        last replies hit keep their completion (a kept reply is the same object at each hit
        until it is replaced), so a hot reply is decoded once."""
        span = telemetry.tracer.start_span(
            prepared.span_name, kind=SpanKind.CLIENT, attributes=prepared.span_attributes
        )
        try:
            decoded = self._decoded.get(key)
            if decoded is not None and decoded[0] is reply:
                completion = decoded[1]
            else:
                completion = self._decode(prepared, 200, reply, 0, lm15)
                completion = msgspec.structs.replace(completion, usage=Usage())
                if len(reply) <= _HIT_MEMO_BYTES:
                    if len(self._decoded) >= _HIT_MEMO_SIZE:
                        self._decoded.clear()
                    self._decoded[key] = (reply, completion)
            span.set_attribute(telemetry.CACHE_HIT, True)
            if span.is_recording():
                span.set_attribute(telemetry.GEN_AI_RESPONSE_MODEL, completion.model)
        finally:
            span.end()
        return completion

    async def _request(
        self,
        session: aiohttp.ClientSession,
        prepared: _Prepared,
        body: bytes,
        client_timeout: aiohttp.ClientTimeout,
        on_text: Callable[[str], Awaitable[None]] | None,
        temperature: float | None,
        max_tokens: int | None,
        key: bytes | None,
        lm15: bool,
    ) -> tuple[Completion, bytes | None]:
        """Send ``body`` under the LM call's span (``key``: the cache was asked and missed;
        ``lm15``: the request is one DSPy's default engine sends, whose reading of the reply
        :func:`decode_completion` follows); the completion and the reply's bytes (None for a
        streamed reply)."""
        span = telemetry.tracer.start_span(
            prepared.span_name, kind=SpanKind.CLIENT, attributes=prepared.span_attributes
        )
        try:
            completion, content = await self._send(
                session, prepared, body, client_timeout, on_text, lm15
            )
            usage = completion.usage
            if span.is_recording():  # only with an OpenTelemetry SDK installed
                if key is not None:
                    span.set_attribute(telemetry.CACHE_HIT, False)
                if temperature is not None:
                    span.set_attribute(telemetry.GEN_AI_REQUEST_TEMPERATURE, temperature)
                if max_tokens is not None:
                    span.set_attribute(telemetry.GEN_AI_REQUEST_MAX_TOKENS, max_tokens)
                span.set_attributes(
                    {
                        telemetry.GEN_AI_RESPONSE_MODEL: completion.model,
                        telemetry.GEN_AI_USAGE_INPUT_TOKENS: usage.prompt_tokens,
                        telemetry.GEN_AI_USAGE_OUTPUT_TOKENS: usage.completion_tokens,
                        telemetry.GEN_AI_RESPONSE_FINISH_REASONS: [
                            r or "" for r in completion.finish_reasons
                        ],
                    }
                )
        except LMError as exc:
            if span.is_recording():
                span.set_attribute(telemetry.ERROR_TYPE, type(exc).__name__)
                span.set_status(StatusCode.ERROR, str(exc))
            raise
        finally:
            span.end()
        return completion, content

    async def _send(
        self,
        session: aiohttp.ClientSession,
        prepared: _Prepared,
        body: bytes,
        timeout: aiohttp.ClientTimeout,
        on_text: Callable[[str], Awaitable[None]] | None,
        lm15: bool,
    ) -> tuple[Completion, bytes | None]:
        retries = prepared.lm.num_retries
        attempt = 0
        while True:
            attempt += 1
            kind: type[LMError] = LMError
            status: int | None = None
            excerpt: str | None = None
            retry_after: float | None = None
            context_window: bool | None = None
            cause: BaseException | None = None
            streamed: StreamedReply | None = None
            try:
                async with session.post(
                    prepared.url, data=body, headers=prepared.headers, timeout=timeout
                ) as response:
                    status = response.status
                    if (
                        on_text is not None
                        and status < 300
                        and response.content_type == "text/event-stream"
                    ):
                        streamed = StreamedReply(prepared.lm.wire_model)
                        reply = await self._read_stream(
                            prepared, response, streamed, on_text, attempt
                        )
                        return reply, None
                    content = await response.read()
                    if status >= 300:
                        retry_after = retry_after_seconds(response.headers)
            except asyncio.TimeoutError as exc:
                kind, cause, retryable = LMTimeout, exc, self.retry.retry_timeouts
                message = (
                    f"the LM at {prepared.url} did not answer within {timeout.total} s; "
                    "raise LM.timeout or check the server"
                )
            except (_http().ClientError, OSError) as exc:
                kind, cause, retryable = LMConnectionError, exc, True
                message = f"could not reach the LM at {prepared.url}: {type(exc).__name__}: {exc}"
            else:
                if status < 300:
                    completion = self._decode(prepared, status, content, attempt, lm15)
                    if on_text is not None:  # a server that does not stream: one piece
                        await on_text(completion.text)
                    return completion, content
                excerpt = prepared.excerpt(content)
                retryable = status in (408, 429) or status >= 500
                message = f"the LM at {prepared.url} answered HTTP {status}{_error_detail(content)}"
                if lm15:  # DSPy's default engine knows a context window error by its code
                    context_window = _error_code(content) == "context_length_exceeded"
            if streamed is not None and streamed.events:  # pieces went out: no retry
                message += f" (its stream broke after {streamed.events} events)"
                retryable = False
            message = redact(message, prepared.secret)  # servers may echo the key
            if retryable and attempt <= retries:
                delay = self.retry.delay(attempt - 1, retry_after)
                deadline = CALL_DEADLINE.get()
                if deadline is None or asyncio.get_running_loop().time() + delay < deadline:
                    logger.info("%s; retry %d of %d in %.3f s", message, attempt, retries, delay)
                    await asyncio.sleep(delay)
                    continue
                message += (
                    f" (after {attempt} attempt{'s' if attempt > 1 else ''}; the next, in "
                    f"{delay:.3g} s, would start after the call's deadline)"
                )
            elif attempt > 1:
                message += f" (after {attempt} attempts)"
            raise kind(
                message, status=status, body=excerpt, context_window=context_window
            ) from cause

    @staticmethod
    async def _read_stream(
        prepared: _Prepared,
        response: aiohttp.ClientResponse,
        streamed: StreamedReply,
        on_text: Callable[[str], Awaitable[None]],
        attempts: int,
    ) -> Completion:
        """Read a reply's server-sent events until ``[DONE]`` (or the end of the body), giving
        each piece of text to ``on_text`` before reading on."""
        try:
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue  # blank lines between events, comments, event names
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                text = streamed.add(data)
                if text:
                    await on_text(text)
            return streamed.completion(attempts)
        except (msgspec.DecodeError, ValueError) as exc:
            problem = (
                "is not a chat.completion.chunk" if isinstance(exc, msgspec.DecodeError) else ""
            )
            message = f"the LM at {prepared.url} sent a stream that {problem or 'failed'}: {exc}"
            raise LMError(redact(message, prepared.secret), status=response.status) from exc

    @staticmethod
    def _decode(
        prepared: _Prepared, status: int, content: bytes, attempts: int, lm15: bool
    ) -> Completion:
        try:
            return decode_completion(content, prepared.lm.wire_model, attempts, lm15)
        except (msgspec.DecodeError, ValueError) as exc:
            if isinstance(exc, msgspec.ValidationError):
                problem = "is not a chat.completion"
            elif isinstance(exc, msgspec.DecodeError):
                problem = "is not valid JSON"
            else:
                problem = "is malformed"
            message = f"the LM at {prepared.url} answered HTTP {status} but its body {problem}"
            raise LMError(
                redact(f"{message}: {exc}", prepared.secret),
                status=status,
                body=prepared.excerpt(content),
            ) from exc
