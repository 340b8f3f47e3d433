"""One streamed call's events, from whatever writes them to the one caller who reads them.

:class:`CallStream` is made by :meth:`ModuleRef.stream <dspex.ModuleRef.stream>` for one call
and travels with it (in the :class:`~dspex.modules.ModuleActor`'s ``Execute``); the call's
task puts it in :data:`STREAM`, its own context, where the implementation that serves the call
finds it: native feeds its LM's deltas to :meth:`CallStream.listeners`, dspy forwards what
``dspy.streamify`` yields. Its buffer is an anyio memory object stream, bounded: a writer
waits for room, so a caller that stops reading slows the LM's socket instead of filling
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars

import anyio

from dspex.streaming._events import StreamChunk, StreamEvent
from dspex.streaming._listen import FieldListener

#: Events a stream holds that its caller has not read yet; a writer waits past this.
BUFFER = 64

#: The stream of the call this task serves, if it is streamed (set by the call's own task).
STREAM: contextvars.ContextVar[CallStream | None] = contextvars.ContextVar(
    "dspex_stream", default=None
)


class Listeners:
    """The field listeners of one predictor in one streamed call: ``feed`` each content delta
    of its LM reply."""

    __slots__ = ("fields", "stream")

    def __init__(self, stream: CallStream, fields: list[FieldListener]):
        self.stream = stream
        self.fields = fields

    async def feed(self, delta: str) -> None:
        """Give ``delta`` to every field's listener; put the chunks they complete."""
        for listener in self.fields:
            chunk = listener.receive(delta)
            if chunk is not None:
                await self.stream.put(chunk)


class _Buffer:
    """The events of one streamed call that its caller has not read yet: an anyio memory
    object stream of ``capacity`` (a writer waits for room), shared by whoever in the call
    writes (a wrapped program's modules) and read by the call's one reader."""

    __slots__ = ("drained", "receiver", "sender", "sent")

    def __init__(self, capacity: int):
        self.sender, self.receiver = anyio.create_memory_object_stream[StreamEvent](capacity)
        self.sent = False  # a chunk went out, from any module of the call
        self.drained = asyncio.Event()  # set once take() returned the end

    async def put(self, event: StreamEvent) -> None:
        # closed: the call is over, or its reader left, and nobody reads it
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            sender = self.sender
            reader_waits = sender.statistics().tasks_waiting_receive
            try:
                sender.send_nowait(event)  # room: no trip through the event loop
            except anyio.WouldBlock:
                await sender.send(event)  # full: wait for the reader
            else:
                if reader_waits:  # the reader waited for this one: let it have it now
                    await asyncio.sleep(0)

    def close(self) -> None:
        """No more events: the reader reads those left, then the end."""
        self.sender.close()

    def discard(self) -> None:
        """Nobody reads any more: both ends closed (a writer that waits for room stops)."""
        self.sender.close()
        self.receiver.close()

    async def get(self) -> StreamEvent | None:
        receiver = self.receiver
        try:
            try:
                return receiver.receive_nowait()  # buffered: no trip through the event loop
            except anyio.WouldBlock:
                return await receiver.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            receiver.close()
            return None

    async def take(self) -> tuple[list[StreamEvent], bool]:
        """Every event buffered, once there is one (or the end), and whether the stream
        ended with them."""
        first = await self.get()
        if first is None:
            self.drained.set()
            return [], True
        taken = [first]
        receiver = self.receiver
        while True:
            try:
                taken.append(receiver.receive_nowait())
            except anyio.WouldBlock:
                end = receiver.statistics().open_send_streams == 0
                break
            except anyio.EndOfStream:
                end = True
                break
        if end:
            receiver.close()
            self.drained.set()
        return taken, end


class CallStream:
    """Where one module of a streamed call writes its events: the call's buffer, read by its
    caller, and the module's field listeners. ``prefix``: the module's path in a wrapped
    program (its predictors' paths follow it), given by :meth:`child`."""

    __slots__ = ("_buffer", "_listeners", "prefix", "sent")

    def __init__(self, buffer: int = BUFFER, *, prefix: str = "", shared: _Buffer | None = None):
        self._buffer = shared if shared is not None else _Buffer(buffer)
        self.prefix = prefix
        self.sent = False  # this module sent a chunk: it may no longer switch implementation
        self._listeners: dict[str, Listeners] = {}

    @property
    def anything_sent(self) -> bool:
        """Whether any module of the call sent a chunk (a resent call would repeat it)."""
        return self._buffer.sent

    def child(self, path: str) -> CallStream:
        """The stream of sub-module ``path`` of a wrapped program: the same buffer, its own
        listeners, its predictors' paths after ``path``."""
        prefix = f"{self.prefix}.{path}" if self.prefix else path
        return CallStream(prefix=prefix, shared=self._buffer)

    def listeners(self, predictor: str, adapter: str, fields: tuple[str, ...]) -> Listeners:
        """The listeners of ``predictor`` (its path in the module; ``adapter``: the name of
        DSPy's adapter class) for this call: made on its first LM reply, kept for the next
        ones (a ReAct's loop), as DSPy keeps them."""
        found = self._listeners.get(predictor)
        if found is None:
            made = [FieldListener(self.path(predictor), name, adapter) for name in fields]
            found = self._listeners[predictor] = Listeners(self, made)
        return found

    def path(self, predictor: str) -> str:
        """``predictor``'s path as its chunks carry it: in a wrapped program, after the
        module's own (a Predict's ``self`` is the module's path), as DSPy names it."""
        if not self.prefix:
            return predictor
        return self.prefix if predictor == "self" else f"{self.prefix}.{predictor}"

    def restart(self) -> None:
        """The module starts over on another implementation (nothing was sent): no state."""
        self._listeners.clear()

    async def finish(self) -> None:
        """The module has its Prediction: each field's text still held back, as its last
        chunk."""
        for listeners in self._listeners.values():
            for listener in listeners.fields:
                chunk = listener.finalize()
                if chunk is not None:
                    await self.put(chunk)

    async def put(self, event: StreamEvent) -> None:
        """Add ``event``; wait while the buffer is full (the caller reads slower)."""
        if type(event) is StreamChunk:
            self.sent = self._buffer.sent = True
        await self._buffer.put(event)

    def close(self) -> None:
        """No more events: the call is over (its reader reads what is left, then the end)."""
        self._buffer.close()

    async def get(self) -> StreamEvent | None:
        """The next event, or None once the call is over and every event was read."""
        return await self._buffer.get()

    async def take(self) -> tuple[list[StreamEvent], bool]:
        """Every event buffered once there is one, and whether the stream ended with them (a
        dspy worker's answer to a Pull)."""
        return await self._buffer.take()

    async def drained(self) -> None:
        """Close, and wait until a :meth:`take` returned the end (every event was taken)."""
        self._buffer.close()
        await self._buffer.drained.wait()

    def discard(self) -> None:
        """Nobody reads the call's events any more: the buffer's both ends closed."""
        self._buffer.discard()
