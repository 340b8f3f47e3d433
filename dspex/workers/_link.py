"""The service's end of a local worker's socket: frames in, read into one buffer it keeps.

Why not asyncio's streams: a stream reader's transport reads with ``sock.recv(256 KiB)``,
which allocates a 256 KiB bytes object per read and shrinks it in place to what arrived.
Under glibc, whose mmap threshold rises past 256 KiB as soon as a larger block is freed, those
blocks come from the heap, and the small long-lived objects allocated around them (cached
replies, the router's samples) leave holes that the next 256 KiB read does not fit: the heap
creeps. Measured on the 30,000-call soak run: the service's heap grew 2 MB between its second
and last tenth, with 2.6 such reads per call. Reading into a buffer kept for the socket's
life allocates nothing per read.
"""

from __future__ import annotations

import asyncio
from collections import deque

from dspex.workers._frames import HEADER, FromWorker, from_worker

#: Bytes read at once; the buffer grows to hold a larger frame whole, and goes back to this
#: size once it has been read.
CHUNK = 64 * 1024

#: Messages decoded but not received yet past which the link stops reading the socket, until
#: its reader has taken half of them (the worker then blocks on its writes).
BACKLOG = 256


class FrameLink(asyncio.BufferedProtocol):
    """Decodes the worker's frames as they arrive; :meth:`receive` hands them out in order.

    One reader at a time. A frame that does not decode is handed out as the exception
    msgspec raised, in its place (the frames after it still arrive)."""

    def __init__(self) -> None:
        self._buffer = bytearray(CHUNK)
        self._start = 0  # the first byte not decoded yet
        self._end = 0  # the end of the bytes read
        self._messages: deque[FromWorker | Exception] = deque()
        self._outgoing: list[bytes] = []  # sent in this turn of the loop, not written yet
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._ended = False
        self._paused = False

    # -- the transport's side ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._end == len(self._buffer):
            self._make_room()
        return memoryview(self._buffer)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        buffer, start, end = self._buffer, self._start, self._end
        while end - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, start)
            stop = start + HEADER.size + size
            if stop > end:
                break
            try:
                msg: FromWorker | Exception = from_worker.decode(
                    memoryview(buffer)[start + HEADER.size : stop]
                )
            except Exception as exc:  # msgspec's DecodeError or ValidationError
                msg = exc
            self._messages.append(msg)
            start = stop
        if start == end:
            start = end = 0
            if len(buffer) > CHUNK:  # a large frame has been read: back to the usual size
                self._buffer = bytearray(CHUNK)
        self._start, self._end = start, end
        if len(self._messages) >= BACKLOG and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False  # the worker has closed its end: close ours too

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True  # a reset (the worker was killed) ends the frames as EOF does
        self._transport = None
        self._wake()

    def _make_room(self) -> None:
        """Room at the buffer's end for the frame being read: move its bytes to the front,
        into a larger buffer if the frame does not fit the present one."""
        unread = self._end - self._start
        need = HEADER.size
        if unread >= HEADER.size:
            need += HEADER.unpack_from(self._buffer, self._start)[0]
        if need > len(self._buffer):
            grown = bytearray(max(need, CHUNK))
            grown[:unread] = self._buffer[self._start : self._end]
            self._buffer = grown
        else:  # the frame fits: a full buffer has a decoded frame before it
            self._buffer[:unread] = self._buffer[self._start : self._end]
        self._start, self._end = 0, unread

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the service's side --------------------------------------------------------------

    async def receive(self) -> FromWorker | None:
        """The next message, or None once the socket has closed and every message it
        carried has been received.

        :raises msgspec.DecodeError: (or ``ValidationError``) for a frame that did not decode.
        """
        while not self._messages:
            if self._ended:
                return None
            assert self._waiter is None, "one reader at a time"
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        msg = self._messages.popleft()
        if self._paused and len(self._messages) <= BACKLOG // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        if isinstance(msg, Exception):
            raise msg
        return msg

    def send(self, data: bytes) -> None:
        """Write ``data`` once the running callback has returned: what is sent in one turn of
        the event loop goes in one write (a system call per turn, not per frame). Dropped
        once the socket is closing, as a transport does."""
        if self._transport is None:
            return
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        if self._transport is not None and self._outgoing:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def close(self) -> None:
        """Close the socket (after writing what has been sent)."""
        if self._transport is not None:
            self._flush()
            self._transport.close()
