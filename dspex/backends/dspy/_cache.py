"""The dspy implementation's side of the response cache.

DSPy's own cache stays off (``LM.to_dspy``): DSPy keys a request before its engine turns it into
what is sent, so its keys cannot be the native client's. dspex answers one level lower, in the
HTTP transport of the clients LiteLLM makes for OpenAI-compatible servers (:func:`install`), and
in those of DSPy's default engine (:mod:`dspex.backends.dspy._cache_lm15`):
there the request is the body on the wire, the same JSON the native client sends, and so has
the same key (:func:`~dspex.cache.key_of`). Only the requests of a dspex call whose cache is on go
through the cache (the call's context says so, :data:`CACHING`); any other request in the
process passes through untouched.

A hit is answered as the server answered, with its usage set to zero (no request was made),
so DSPy, LiteLLM and dspex report no tokens for it, as DSPy reports a hit of its own cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from dspex.cache import Claims, key_of

if TYPE_CHECKING:
    import httpx

__all__ = ["CACHING", "Caching", "install"]

logger = logging.getLogger("dspex.cache")

_NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class Caching:
    """A dspex call's use of the response cache, in its context: the cache (or the worker's
    link to the service's), the event loop it lives on, and the call's rollout id."""

    __slots__ = ("claims", "hits", "loop", "refresh", "rollout_id")

    def __init__(self, claims: Claims, rollout_id: int | None, refresh: bool):
        self.claims = claims
        self.loop = asyncio.get_running_loop()
        self.rollout_id = rollout_id
        self.refresh = refresh  # send, and keep the reply, without asking the cache first
        self.hits = 0  # the call's requests answered from the cache

    def key(self, request: httpx.Request) -> bytes | None:
        """The cache key of ``request`` (LiteLLM's), or None if it is not a chat completion
        the cache answers (a streamed one, or another endpoint)."""
        try:
            content = request.content
        except RuntimeError:  # a streamed request body
            return None
        return self.key_of(request.method, request.url.path, content)

    def key_of(self, method: str, path: str, content: bytes) -> bytes | None:
        """The cache key of a request with this method, URL path and body, or None if it is not
        a chat completion the cache answers."""
        if method != "POST" or not path.endswith("/chat/completions"):
            return None
        try:
            body = msgspec.json.decode(content)
        except msgspec.DecodeError:
            return None
        if not isinstance(body, dict) or body.get("stream"):
            return None
        return key_of(body, self.rollout_id)


#: The current dspex call's cache use (None: its LM requests are not cached).
CACHING: contextvars.ContextVar[Caching | None] = contextvars.ContextVar(
    "dspex_dspy_caching", default=None
)


def _hit_body(reply: bytes) -> bytes:
    """A kept reply as a hit answers it: with no usage (no request was made)."""
    body = msgspec.json.decode(reply)
    body["usage"] = _NO_USAGE
    return msgspec.json.encode(body)


def _hit(reply: bytes, request: httpx.Request) -> httpx.Response:
    import httpx

    headers = {"content-type": "application/json"}
    return httpx.Response(200, headers=headers, content=_hit_body(reply), request=request)


def _keepable(content: bytes) -> bytes | None:
    """``content`` if it is a chat.completion worth keeping (a JSON object with choices)."""
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None
    return content if isinstance(body, dict) and body.get("choices") else None


def _as_sent(content: bytes) -> bytes:
    return content


def _decoding(response: httpx.Response) -> Callable[[bytes], bytes] | None:
    """What turns the body of ``response`` as read from the socket into the reply, as the
    client will read it (httpx undoes the ``Content-Encoding`` that it asked for: gzip and
    deflate, and br or zstd when their packages are installed), or None when the reply is not
    to be kept (not a 200, or in an encoding httpx does not undo)."""
    if response.status_code != 200:
        return None
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return _as_sent
    from httpx._decoders import SUPPORTED_DECODERS  # httpx's own, to undo exactly what it does

    make = SUPPORTED_DECODERS.get(encoding)
    if make is None:
        return None

    def decode(content: bytes) -> bytes:
        decoder = make()
        return decoder.decode(content) + decoder.flush()

    return decode


def _filler(caching: Caching, key: bytes, *, threadsafe: bool) -> Callable[[bytes | None], None]:
    """What ends a request's claim with its reply (None: none to keep), from the loop's thread
    or (``threadsafe``) any other. A refreshing call claimed nothing: it only keeps a reply."""

    def fill(reply: bytes | None) -> None:
        if caching.refresh and reply is None:
            return
        if threadsafe:
            caching.loop.call_soon_threadsafe(caching.claims.fill, key, reply)
        else:
            caching.claims.fill(key, reply)

    return fill


def _transports() -> tuple[type[Any], type[Any]]:
    """The two transport classes (made on first use: httpx is imported with LiteLLM)."""
    import httpx

    class Kept:
        """A reply's body as the client reads it, kept (if it is a chat.completion) once the
        client has read it all and closes it; given back with nothing if it does not."""

        def __init__(
            self,
            inner: Any,
            done: Callable[[bytes | None], None],
            decode: Callable[[bytes], bytes],
        ):
            self.inner, self.decode = inner, decode
            self.done: Callable[[bytes | None], None] | None = done  # None once called
            self.parts: list[bytes] = []
            self.whole = False

        def end(self) -> None:
            done, self.done = self.done, None
            if done is None:
                return
            reply = None
            # a body httpx cannot decode fails the client too: nothing to keep
            with contextlib.suppress(httpx.DecodingError):
                reply = _keepable(self.decode(b"".join(self.parts))) if self.whole else None
            done(reply)

    class AsyncKept(Kept, httpx.AsyncByteStream):
        """:class:`Kept` for the async client."""

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for part in self.inner:
                self.parts.append(part)
                yield part
            self.whole = True

        async def aclose(self) -> None:
            try:
                await self.inner.aclose()
            finally:
                self.end()

    class SyncKept(Kept, httpx.SyncByteStream):
        """:class:`Kept` for the sync client."""

        def __iter__(self) -> Iterator[bytes]:
            for part in self.inner:
                self.parts.append(part)
                yield part
            self.whole = True

        def close(self) -> None:
            try:
                self.inner.close()
            finally:
                self.end()

    class AsyncCachingTransport(httpx.AsyncBaseTransport):
        """LiteLLM's async transport, answering a dspex call's requests from the cache."""

        def __init__(self, inner: httpx.AsyncBaseTransport):
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            caching = CACHING.get()
            key = caching.key(request) if caching is not None else None
            if key is None:
                return await self.inner.handle_async_request(request)
            assert caching is not None
            if not caching.refresh:
                reply = await caching.claims.claim(key)
                if reply is not None:
                    caching.hits += 1
                    return _hit(reply, request)
            fill = _filler(caching, key, threadsafe=False)
            try:
                response = await self.inner.handle_async_request(request)
            except BaseException:
                fill(None)
                raise
            decode = _decoding(response)
            if decode is None:
                fill(None)
                return response
            response.stream = AsyncKept(response.stream, fill, decode)
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    class CachingTransport(httpx.BaseTransport):
        """LiteLLM's sync transport (DSPy's sync modules, in threads), likewise: the cache is
        asked on its event loop."""

        def __init__(self, inner: httpx.BaseTransport):
            self.inner = inner

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            caching = CACHING.get()
            key = caching.key(request) if caching is not None else None
            if key is None:
                return self.inner.handle_request(request)
            assert caching is not None
            if not caching.refresh:
                claim = caching.claims.claim(key)
                reply = asyncio.run_coroutine_threadsafe(claim, caching.loop).result()
                if reply is not None:
                    caching.hits += 1  # one thread per call at a time: no race
                    return _hit(reply, request)
            fill = _filler(caching, key, threadsafe=True)
            try:
                response = self.inner.handle_request(request)
            except BaseException:
                fill(None)
                raise
            decode = _decoding(response)
            if decode is None:
                fill(None)
                return response
            response.stream = SyncKept(response.stream, fill, decode)
            return response

        def close(self) -> None:
            self.inner.close()

    return AsyncCachingTransport, CachingTransport


_installed = False


def install() -> None:
    """Wrap the transport of every HTTP client LiteLLM makes for OpenAI-compatible servers
    (once per process, after DSPy's import): LiteLLM keeps making, caching (per event loop)
    and closing its clients as it does; each one's requests pass through the cache's transport
    first. Leaves LiteLLM alone, with a warning, if its client factory is not where this
    LiteLLM version is known to keep it (the dspy side then does not cache). Wraps the
    transports of DSPy's default engine likewise (:mod:`dspex.backends.dspy._cache_lm15`)."""
    global _installed
    if _installed:
        return
    _installed = True
    from dspex.backends.dspy import _cache_lm15

    _cache_lm15.install()
    try:
        from litellm.llms.openai.common_utils import BaseOpenAILLM

        make_async = BaseOpenAILLM.__dict__["_get_async_http_client"].__func__
        make_sync = BaseOpenAILLM.__dict__["_get_sync_http_client"].__func__
    except (ImportError, KeyError, AttributeError) as exc:
        logger.warning("the dspy implementation will not use the response cache: %r", exc)
        return
    async_transport, sync_transport = _transports()

    def get_async_http_client(*args: Any, **kwargs: Any) -> Any:
        client = make_async(*args, **kwargs)
        if client is not None and not isinstance(client._transport, async_transport):
            client._transport = async_transport(client._transport)
        return client

    def get_sync_http_client(*args: Any, **kwargs: Any) -> Any:
        client = make_sync(*args, **kwargs)
        if client is not None and not isinstance(client._transport, sync_transport):
            client._transport = sync_transport(client._transport)
        return client

    BaseOpenAILLM._get_async_http_client = staticmethod(get_async_http_client)
    BaseOpenAILLM._get_sync_http_client = staticmethod(get_sync_http_client)
