"""What the caller of a streamed call holds: an async iterator of its events, then its
Prediction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

from dspex.prediction import Prediction
from dspex.streaming._call import CallStream
from dspex.streaming._events import StreamEvent


class Stream:
    """The events of one streamed call, in order: :class:`~dspex.StreamChunk` and
    :class:`~dspex.StatusMessage` events, then the call's :class:`~dspex.Prediction` (the
    last item). The call starts on the first ``__anext__``; a call that fails raises its dspex
    error from the iteration, after the events sent before it.

    Leave early and the call is cancelled, its LM request with it: on :meth:`aclose`, at the
    end of ``async with``, or when the stream is garbage (for a plain ``async for`` that
    breaks). A stream read slower than its LM writes holds at most a small buffer of events;
    the LM's socket waits for the reader.
    """

    __slots__ = ("__weakref__", "_call", "_done", "_events", "_start")

    def __init__(self, start: Callable[[CallStream], Coroutine[Any, Any, Prediction]]):
        self._start: Callable[[CallStream], Coroutine[Any, Any, Prediction]] | None = start
        self._events = CallStream()
        self._call: asyncio.Task[Prediction] | None = None
        self._done = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> StreamEvent | Prediction:
        call = self._call
        if call is None:
            if self._done:  # closed before it started
                raise StopAsyncIteration
            call = self._begin()
        event = await self._events.get()
        if event is not None:
            return event
        if self._done:
            raise StopAsyncIteration
        self._done = True
        if call.cancelled():  # closed by aclose() from another task
            raise StopAsyncIteration
        return call.result()  # the Prediction, or the call's error

    def _begin(self) -> asyncio.Task[Prediction]:
        start, self._start = self._start, None
        assert start is not None
        call = self._call = asyncio.get_running_loop().create_task(start(self._events))
        call.add_done_callback(_ended(self._events))
        return call

    async def aclose(self) -> None:
        """Stop the call (its LM request included) if it still runs; idempotent."""
        self._done = True
        self._start = None
        call = self._call
        if call is not None and not call.done():
            call.cancel()
            await asyncio.wait({call})
        self._events.discard()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        call = self._call
        if call is not None and not call.done():
            call.cancel()
        self._events.discard()


def _ended(events: CallStream) -> Callable[[asyncio.Task[Prediction]], None]:
    def ended(call: asyncio.Task[Prediction]) -> None:
        events.close()
        if not call.cancelled():
            call.exception()  # retrieved: the reader raises it, or nobody reads any more

    return ended
