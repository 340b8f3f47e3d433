"""A minimal HTTP/1.1 server connection on ``asyncio.BufferedProtocol``, just enough for LM
clients.

It reads requests with a ``Content-Length`` body (chunked request bodies get 411), keeps
connections alive, answers ``Expect: 100-continue``, and handles one request at a time per
connection (pipelined requests wait in the buffer). What to answer is the owner's business.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Protocol

__all__ = ["Connection", "Handler", "Request"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
#: Bytes read at once, into an area the connection keeps: asyncio's plain protocols read
#: with ``sock.recv(256 KiB)``, a fresh heap block per read that fragments the heap of a
#: long-running process (see ``dspex/workers/_link.py``).
_CHUNK = 64 * 1024


class Request:
    """One parsed request (internal; the server records it as a RecordedRequest)."""

    __slots__ = ("content", "headers", "keep_alive", "method", "path")

    def __init__(
        self, method: str, path: str, headers: dict[str, str], content: bytes, keep_alive: bool
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.content = content
        self.keep_alive = keep_alive


class Handler(Protocol):
    """What a connection calls: one request in, an answer later through the connection."""

    def connection_opened(self, connection: Connection) -> None: ...

    def handle(self, connection: Connection, request: Request) -> None: ...

    def connection_closed(self, connection: Connection) -> None: ...


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Connection(asyncio.BufferedProtocol):
    """One client connection: parses requests and writes the answers its handler chooses."""

    def __init__(self, handler: Handler, ident: int) -> None:
        self.ident = ident
        self.pending: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._handler = handler
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._read = bytearray(_CHUNK)
        self._busy = False
        self._parsing = False
        self._keep_alive = True
        self._sent_continue = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._handler.connection_opened(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._read)

    def buffer_updated(self, nbytes: int) -> None:
        self._buffer += memoryview(self._read)[:nbytes]
        if not self._busy:
            self._parse()

    def eof_received(self) -> bool:
        return False  # a half-closed client gets no answer; close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.cancel_pending()
        self._handler.connection_closed(self)

    @property
    def open(self) -> bool:
        """Whether the client is still connected."""
        return self._transport is not None

    def cancel_pending(self) -> None:
        """Cancel a delayed or awaited answer that has not been written yet."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None

    def respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> float:
        """Write one complete answer; return the monotonic time it was written."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        fields = f"Content-Length: {len(body)}\r\n{extra}"
        return self._end(self._head(status, content_type, fields) + body)

    def start_stream(self, content_type: str = "text/event-stream") -> None:
        """Begin a 200 answer whose body follows in :meth:`send` pieces (chunked encoding)."""
        if self._transport is not None:
            fields = "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"
            self._transport.write(self._head(200, content_type, fields))

    def send(self, data: bytes) -> None:
        """Write one piece of a streamed answer."""
        if self._transport is not None and data:
            self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    def end_stream(self) -> float:
        """Finish a streamed answer; return the monotonic time it was written."""
        return self._end(b"0\r\n\r\n")

    def _head(self, status: int, content_type: str, fields: str) -> bytes:
        connection = "keep-alive" if self._keep_alive else "close"
        return (
            f"HTTP/1.1 {status} {_reason(status)}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"{fields}Server: dspex-scripted-lm\r\nConnection: {connection}\r\n\r\n"
        ).encode("latin-1")

    def _end(self, data: bytes) -> float:
        """Write the last bytes of an answer, then close or read the next request; return the
        monotonic time."""
        now = time.monotonic()
        transport = self._transport
        self.pending = None
        if transport is None:
            return now
        transport.write(data)
        if not self._keep_alive:
            transport.close()
            return now
        self._busy = False
        if self._buffer and not self._parsing:
            self._parse()
        return now

    def drop(self) -> float:
        """Close the connection without an answer; return the monotonic time."""
        self.pending = None
        if self._transport is not None:
            self._transport.close()
        return time.monotonic()

    def abort(self) -> None:
        """Close at once, discarding anything unsent (used when the server stops)."""
        self.cancel_pending()
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, status: int, message: str) -> None:
        self._keep_alive = False
        self._busy = True
        body = f'{{"error": {{"message": "{message}", "type": "invalid_request_error"}}}}'
        self.respond(status, body.encode())

    def _parse(self) -> None:
        self._parsing = True
        try:
            while not self._busy and self._transport is not None and self._buffer:
                if not self._parse_one():
                    return
        finally:
            self._parsing = False

    def _parse_one(self) -> bool:
        """Dispatch one complete request from the buffer; False if more bytes are needed."""
        buffer = self._buffer
        while buffer[:2] == b"\r\n":  # tolerated between requests (RFC 9112, 2.2)
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._fail(431, "request head too large")
            return False
        lines = buffer[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400, "malformed request line")
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                self._fail(400, "malformed header line")
                return False
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._fail(411, "chunked request bodies are not supported; send Content-Length")
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._fail(400, "invalid Content-Length")
            return False
        start = end + 4
        if len(buffer) < start + length:
            if headers.get("expect", "").lower() == "100-continue" and not self._sent_continue:
                self._sent_continue = True
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        content = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._sent_continue = False
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self._keep_alive = connection == "keep-alive"
        else:
            self._keep_alive = connection != "close"
        self._busy = True
        path = target.partition("?")[0]
        self._handler.handle(self, Request(method, path, headers, content, self._keep_alive))
        return True
