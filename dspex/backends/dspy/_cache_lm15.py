"""The response cache in the HTTP transports of DSPy's default engine (lm15).

A request the dspy implementation sends by DSPy's default engine (see ``dspex.lm._engine``)
goes through lm15's own HTTP/1.1 transports, not LiteLLM's httpx clients: :func:`install`
wraps their one entry point each, as :func:`dspex.backends.dspy._cache.install` wraps
LiteLLM's. lm15 undoes any Content-Encoding itself, so the body its transport yields is the
reply as sent; it is kept once the engine has read it all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from dspex.backends.dspy._cache import CACHING, Caching, _filler, _hit_body, _keepable

__all__ = ["install"]

logger = logging.getLogger("dspex.cache")

_HEADERS = [("content-type", "application/json")]


def _asked(request: Any) -> tuple[Caching, bytes] | None:
    """The call's cache use and the key of lm15's ``request``, if the cache answers it."""
    caching = CACHING.get()
    if caching is None:
        return None
    key = caching.key_of(request.method, urlsplit(request.url).path, request.body)
    return None if key is None else (caching, key)


def _kept(parts: list[bytes], consumed: bool) -> bytes | None:
    return _keepable(b"".join(parts)) if consumed else None


def install() -> bool:
    """Wrap lm15's async and sync transports (once per process); False, with a warning, if
    they are not where DSPy 3.4.1 keeps them."""
    try:
        from dspy._vendor.lm15.transports._async import StdlibAsyncTransport
        from dspy._vendor.lm15.transports._sync import StdlibTransport
        from dspy._vendor.lm15.transports._types import AsyncTransportResponse, TransportResponse

        do_stream = StdlibAsyncTransport.__dict__["_do_stream"]
        stream = StdlibTransport.__dict__["stream"]
    except (ImportError, KeyError) as exc:
        logger.warning("requests by DSPy's default engine will not use the response cache: %r", exc)
        return False

    async def cached_do_stream(self: Any, request: Any) -> Any:
        asked = _asked(request)
        if asked is None:
            return await do_stream(self, request)
        caching, key = asked
        if not caching.refresh:
            reply = await caching.claims.claim(key)
            if reply is not None:
                caching.hits += 1
                return AsyncTransportResponse(
                    status=200,
                    reason="OK",
                    headers=list(_HEADERS),
                    http_version="HTTP/1.1",
                    chunks=_one(_hit_body(reply)),
                    release=_released,
                )
        fill = _filler(caching, key, threadsafe=False)
        try:
            response = await do_stream(self, request)
        except BaseException:
            fill(None)
            raise
        if response.status != 200:
            fill(None)
            return response
        parts: list[bytes] = []
        chunks, release = response._chunks, response._release

        async def kept_chunks() -> AsyncIterator[bytes]:
            async for part in chunks:
                parts.append(part)
                yield part

        async def release_and_keep(consumed: bool) -> None:
            try:
                await release(consumed)
            finally:
                fill(_kept(parts, consumed))

        response._chunks, response._release = kept_chunks(), release_and_keep
        return response

    def cached_stream(self: Any, request: Any) -> Any:
        asked = _asked(request)
        if asked is None:
            return stream(self, request)
        caching, key = asked
        if not caching.refresh:
            claim = caching.claims.claim(key)
            reply = asyncio.run_coroutine_threadsafe(claim, caching.loop).result()
            if reply is not None:
                caching.hits += 1  # one thread per call at a time: no race
                return TransportResponse(
                    status=200,
                    reason="OK",
                    headers=list(_HEADERS),
                    http_version="HTTP/1.1",
                    chunks=iter([_hit_body(reply)]),
                    release=_ignore,
                )
        fill: Callable[[bytes | None], None] = _filler(caching, key, threadsafe=True)
        try:
            response = stream(self, request)
        except BaseException:
            fill(None)
            raise
        if response.status != 200:
            fill(None)
            return response
        parts: list[bytes] = []
        chunks, release = response._chunks, response._release

        def kept_chunks() -> Iterator[bytes]:
            for part in chunks:
                parts.append(part)
                yield part

        def release_and_keep(consumed: bool) -> None:
            try:
                release(consumed)
            finally:
                fill(_kept(parts, consumed))

        response._chunks, response._release = kept_chunks(), release_and_keep
        return response

    StdlibAsyncTransport._do_stream = cached_do_stream
    StdlibTransport.stream = cached_stream
    return True


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _released(consumed: bool) -> None:
    """Nothing to give back: a hit holds no connection."""


def _ignore(consumed: bool) -> None:
    """Nothing to give back: a hit holds no connection."""
