"""The service's end of a worker's socket: frames cut anywhere by the socket arrive whole and
in order, large frames grow the read buffer and it shrinks back, a frame that does not decode
is raised in its place, a full backlog pauses reading, and end of file ends the messages."""

from __future__ import annotations

import asyncio
import socket

import msgspec
import pytest

from dspex.workers._frames import HEADER, Done, Failed, FromWorker, Ready, frame
from dspex.workers._link import BACKLOG, CHUNK, FrameLink


class Transport(asyncio.Transport):
    """Records what the link asks of its transport."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def link() -> FrameLink:
    made = FrameLink()
    made.connection_made(Transport())
    return made


def feed(made: FrameLink, data: bytes, step: int) -> None:
    """Hand ``data`` to the link as a socket would, ``step`` bytes at most per read."""
    for i in range(0, len(data), step):
        chunk = data[i : i + step]
        while chunk:
            buffer = made.get_buffer(-1)
            n = min(len(buffer), len(chunk))
            assert n > 0, "the link offered no room to read into"
            buffer[:n] = chunk[:n]
            made.buffer_updated(n)
            chunk = chunk[n:]


def done(i: int, size: int = 10) -> Done:
    return Done(i, bytes([i % 256]) * size, rss=i)


async def received(made: FrameLink, count: int) -> list[FromWorker | None]:
    return [await made.receive() for _ in range(count)]


@pytest.mark.parametrize("step", [1, 3, 7, 100, CHUNK - 1, CHUNK, 10 * CHUNK])
async def test_frames_cut_anywhere_arrive_whole_and_in_order(step: int) -> None:
    messages: list[FromWorker] = [
        Ready(7),
        *(done(i, 10 * i) for i in range(50)),
        Failed(9, b"e", 1),
    ]
    made = link()
    feed(made, b"".join(frame(m) for m in messages), step)
    assert await received(made, len(messages)) == messages


async def test_a_frame_larger_than_the_buffer_grows_it_and_it_shrinks_back() -> None:
    big = done(1, 3 * CHUNK + 5)
    made = link()
    feed(made, frame(done(0)) + frame(big) + frame(done(2)), 4096)
    assert await received(made, 3) == [done(0), big, done(2)]
    assert len(made.get_buffer(-1)) == CHUNK  # back to the usual size once read


async def test_a_frame_that_does_not_decode_is_raised_in_its_place() -> None:
    garbage = b"\xc1not msgpack"
    made = link()
    feed(made, frame(done(0)) + HEADER.pack(len(garbage)) + garbage + frame(done(2)), 5)
    assert await made.receive() == done(0)
    with pytest.raises(msgspec.DecodeError):
        await made.receive()
    assert await made.receive() == done(2)  # the frames after it still arrive


async def test_a_full_backlog_pauses_reading_until_half_is_taken() -> None:
    made = link()
    transport = made._transport
    assert isinstance(transport, Transport)
    feed(made, b"".join(frame(done(i)) for i in range(BACKLOG)), CHUNK)
    assert transport.paused
    await received(made, BACKLOG // 2 - 1)
    assert transport.paused
    await made.receive()
    assert not transport.paused
    assert await received(made, BACKLOG // 2) == [done(i) for i in range(BACKLOG // 2, BACKLOG)]


async def test_over_a_socket_messages_arrive_then_none_at_end_of_file() -> None:
    ours, theirs = socket.socketpair()
    made = FrameLink()
    await asyncio.get_running_loop().create_unix_connection(lambda: made, sock=ours)
    made.send(frame(Ready(1)))
    theirs.settimeout(5)
    assert await asyncio.to_thread(theirs.recv, 100) == frame(Ready(1))
    messages = [done(i, 1000 * i) for i in range(100)]

    def write() -> None:  # more than the socket holds: the link reads while this writes
        theirs.sendall(b"".join(frame(m) for m in messages))
        theirs.shutdown(socket.SHUT_WR)

    writing = asyncio.ensure_future(asyncio.to_thread(write))
    assert await received(made, 101) == [*messages, None]
    await writing
    assert await made.receive() is None  # and stays ended
    made.send(frame(Ready(2)))  # the link has closed its end too: dropped, not an error
    assert theirs.recv(100) == b""
    theirs.close()


async def test_a_reset_socket_ends_the_messages_and_a_waiting_reader_wakes() -> None:
    ours, theirs = socket.socketpair()
    made = FrameLink()
    await asyncio.get_running_loop().create_unix_connection(lambda: made, sock=ours)
    waiting = asyncio.ensure_future(made.receive())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    theirs.close()
    assert await asyncio.wait_for(waiting, 5) is None
    made.send(b"dropped")  # writing to a closed link is not an error


async def test_what_is_sent_in_one_turn_is_written_in_order_and_close_writes_it_first() -> None:
    ours, theirs = socket.socketpair()
    made = FrameLink()
    await asyncio.get_running_loop().create_unix_connection(lambda: made, sock=ours)
    sent = [frame(Ready(i)) for i in range(1000)]
    for data in sent:
        made.send(data)
    made.close()  # before the loop has turned: what was sent is written, then end of file

    def read_all() -> bytes:
        theirs.settimeout(5)
        chunks = []
        while chunk := theirs.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)

    assert await asyncio.to_thread(read_all) == b"".join(sent)
    theirs.close()
