"""The frames between the service and a worker process: a 4-byte length, then a msgspec
msgpack message. What only Python can carry (a module spec, a call's inputs, a prediction, an
error) travels as cloudpickle bytes inside the message.

Service to worker: :class:`Build` (a module, once per worker), :class:`Run` (a call),
:class:`Cancel` (its caller gave up), :class:`Drop` (the module stopped), :class:`Pull` (the
next events of a streamed call). Worker to service: :class:`Ready` (DSPy imported, serving),
:class:`Done` and :class:`Failed` (a call's end, with the worker's resident memory),
:class:`Events` (a Pull's answer). The response cache lives in the service: a worker claims a
request with :class:`Lookup` (answered by :class:`Found`) and gives its reply with
:class:`Store`.

A streamed call's events come by pull, one batch at a time: the service asks for the next batch
once it has put the last one in its caller's stream. A caller who reads slowly thus holds the
worker's stream (a bounded buffer), which holds DSPy, which holds the LM's socket. The worker
answers the call after its last batch was pulled.
"""

from __future__ import annotations

import struct

import msgspec

from dspex.backends._spec import CallOptions
from dspex.streaming._events import StreamEvent

HEADER = struct.Struct(">I")


class Build(msgspec.Struct, tag=True, frozen=True):
    """Build module ``key`` from its pickled spec (it is kept until :class:`Drop`); with an
    ``id``, build it now and answer :class:`Done` or :class:`Failed` (else on first use)."""

    key: int
    spec: bytes
    id: int = 0


class Drop(msgspec.Struct, tag=True, frozen=True):
    """Forget module ``key``."""

    key: int


class Run(msgspec.Struct, tag=True, frozen=True):
    """Call module ``key`` on the pickled ``inputs``; ``timeout`` is what is left of the
    call's deadline, in seconds (None: none); ``trace``: the caller's trace context (W3C
    headers) when the call is traced, so the worker records its part as a child span."""

    id: int
    key: int
    inputs: bytes
    options: CallOptions
    timeout: float | None = None
    trace: dict[str, str] | None = None
    stream: bool = False


class Pull(msgspec.Struct, tag=True, frozen=True):
    """Answer with the next events of streamed call ``call`` (an :class:`Events` of id
    ``id``), once there is at least one, or the call's stream has ended."""

    id: int
    call: int


class SpanRecord(msgspec.Struct, frozen=True):
    """A span the worker recorded (it exports nothing itself): its name, start and end in
    nanoseconds since the epoch, attributes, and the error type if it failed. The service
    emits it under the trace context its Run carried."""

    name: str
    start: int
    end: int
    attributes: dict[str, str | int | float | bool]
    error: str | None = None


class Lookup(msgspec.Struct, tag=True, frozen=True):
    """Worker to service: claim the LM reply of cache ``key`` in the service's response cache
    (answered by :class:`Found` ``id``)."""

    id: int
    key: bytes


class Found(msgspec.Struct, tag=True, frozen=True):
    """The answer to :class:`Lookup` ``id``: the reply kept, or None: the worker sends the
    request and answers with :class:`Store`."""

    id: int
    reply: bytes | None


class Store(msgspec.Struct, tag=True, frozen=True):
    """Worker to service: the reply to a request it claimed (None: none to keep)."""

    key: bytes
    reply: bytes | None


class Cancel(msgspec.Struct, tag=True, frozen=True):
    """The caller of call ``id`` stopped waiting: stop its work."""

    id: int


class Ready(msgspec.Struct, tag=True, frozen=True):
    """The worker is serving."""

    pid: int


class Done(msgspec.Struct, tag=True, frozen=True):
    """Call ``id`` returned the pickled prediction ``result``; ``rss``: the worker's resident
    memory in bytes."""

    id: int
    result: bytes
    rss: int
    span: SpanRecord | None = None


class Failed(msgspec.Struct, tag=True, frozen=True):
    """Call ``id`` raised the pickled dspex error ``error`` (or was cancelled); ``cause``: the
    traceback of what the error was raised from in the worker (DSPy's and LiteLLM's
    exceptions stay there: the service imports neither)."""

    id: int
    error: bytes
    rss: int
    cause: str | None = None
    span: SpanRecord | None = None


class Events(msgspec.Struct, tag=True, frozen=True):
    """The answer to :class:`Pull` ``id``: the events of its call in order; ``end``: the
    call's stream has no more."""

    id: int
    events: list[StreamEvent]
    end: bool


ToWorker = Build | Drop | Run | Cancel | Pull | Found
FromWorker = Ready | Done | Failed | Events | Lookup | Store

_encoder = msgspec.msgpack.Encoder()
to_worker = msgspec.msgpack.Decoder(ToWorker)
from_worker = msgspec.msgpack.Decoder(FromWorker)


def encode(message: ToWorker | FromWorker) -> bytes:
    """``message``'s bytes (a frame's body)."""
    return _encoder.encode(message)


def frame(message: ToWorker | FromWorker) -> bytes:
    """``message`` as one frame: its length, then its bytes."""
    body = encode(message)
    return HEADER.pack(len(body)) + body


class WorkerGone(Exception):
    """The worker at the other end has ended; ``code``: its exit code, if known."""

    def __init__(self, code: int | None):
        super().__init__(code)
        self.code = code
