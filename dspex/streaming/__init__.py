"""Streaming: a call's output fields as they are written, then its Prediction.

``async for event in module.stream(inputs)`` yields :class:`StreamChunk` and
:class:`StatusMessage` events, then the :class:`~dspex.Prediction`. Each stream owns its own
listeners and buffer, made for that call alone.
"""

from dspex.streaming._events import StatusMessage, StreamChunk, StreamEvent
from dspex.streaming._stream import Stream

__all__ = ["StatusMessage", "Stream", "StreamChunk", "StreamEvent"]
