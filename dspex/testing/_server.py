"""The scripted OpenAI-compatible LM server.

Implementation choice, by measurement (``benchmarks/bench_scripted_lm.py``: 2 cores, each server
in its own process, one keep-alive aiohttp client, instant replies, best of 3 interleaved rounds,
4 runs): this hand-written HTTP/1.1 server on ``asyncio.Protocol`` spends 24-44 µs of server CPU
per request against 58-108 µs for an equivalent ``aiohttp.web`` app (1.8-2.7x less), answers a
sequential request in ~270 µs against ~355 µs, and matches it on throughput (up to ~10,500
requests/s, where the client is the bottleneck). Less server CPU matters most when the server
shares the machine with the client under test. It also makes faults exact and cheap: a delayed
answer is a ``call_later`` timer instead of a task, a dropped connection is ``transport.close()``,
a hang is simply no answer, and stopping aborts every connection at once instead of waiting out
aiohttp's graceful-shutdown timeout.
"""

from __future__ import annotations

import asyncio
import gzip
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import msgspec

from dspex.errors import ConfigError, ScriptError
from dspex.testing._actions import (
    ACTION_TYPES,
    Action,
    ActionLike,
    Drop,
    Hang,
    Malformed,
    RecordedRequest,
    Reply,
    Script,
    Status,
    Step,
    check_step,
)
from dspex.testing._bodies import (
    chat_completion,
    chat_completion_events,
    error_body,
    model_list,
    status_body,
)
from dspex.testing._http import Connection, Request

__all__ = ["ScriptedLM"]

logger = logging.getLogger("dspex.testing")

_S = TypeVar("_S", bound="ScriptedLM")
_decode = msgspec.json.decode
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODEL_PATHS = frozenset({"/v1/models", "/models"})
_FIXED = (str, *ACTION_TYPES)


def _as_action(value: object) -> Action:
    if isinstance(value, str):
        return Reply(value)
    if isinstance(value, ACTION_TYPES):
        return value
    raise ScriptError(f"the script gave {value!r}; expected Reply, Status, Malformed, Drop or Hang")


class ScriptedLM:
    """A scripted OpenAI-compatible LM server on 127.0.0.1, for tests and benchmarks.

    Use it as an async context manager; point any OpenAI-compatible client at :attr:`base_url`::

        async with ScriptedLM([Status(429, retry_after=1), "Paris"]) as lm:
            ...  # the first request gets HTTP 429, the second the reply "Paris"
        assert len(lm.requests) == 2

    ``script`` is one step used for every request, or an iterable of steps used in order, one
    per request. A step is an action, a string (short for ``Reply(text)``) or a callable
    ``request -> action`` (it may return an awaitable) such as :func:`~dspex.testing.respond`'s,
    mixed freely: ``[Status(500), respond(answer="Paris")]``. A script that is none of these, or
    a list or tuple with an item that is not a step, raises :class:`~dspex.errors.ScriptError`
    when assigned, naming the item and its index (other iterables, maybe endless, are checked
    step by step as they are drawn). The script drives ``POST /v1/chat/completions``;
    ``GET /v1/models`` lists ``model``. A script that raises, gives something other than an
    action or runs out of steps answers HTTP 500 and, when ``strict``, raises ``ScriptError``
    when the server stops. ``record=False`` keeps no requests (for long benchmarks).
    ``gzip=True`` sends each whole reply gzip-compressed (``Content-Encoding: gzip``) to a
    client whose ``Accept-Encoding`` takes it, as OpenAI's servers compress their replies.
    """

    def __init__(
        self,
        script: Script = "",
        *,
        model: str = "scripted-lm",
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        strict: bool = True,
        gzip: bool = False,
    ) -> None:
        self.model = model
        self.gzip = gzip
        self.host = host
        self.requests: list[RecordedRequest] = []
        """Every request received, in arrival order."""
        self.errors: list[str] = []
        """Script failures (each was answered with HTTP 500)."""
        self._port = port
        self._record = record
        self._strict = strict
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ids = itertools.count()
        self._count = 0
        self.script = script

    # -- the script ---------------------------------------------------------------------------

    @property
    def script(self) -> Script:
        """The script answering chat requests; assign to replace it (an iterable starts over)."""
        return self._script

    @script.setter
    def script(self, script: Script) -> None:
        steps: Iterator[Step]
        if isinstance(script, _FIXED) or callable(script):
            steps = itertools.repeat(script if callable(script) else _as_action(script))
        elif isinstance(script, Sequence):
            steps = iter([check_step(step, i) for i, step in enumerate(script)])
        elif isinstance(script, Iterable):  # maybe endless: each step is checked when drawn
            steps = (check_step(step, i) for i, step in enumerate(script))
        else:
            raise ScriptError(
                f"a ScriptedLM script is a reply text, an action, a callable request -> action "
                f"or an iterable of them, got {script!r}"
            )
        self._script = script
        self._steps = steps
        self._consumed = 0

    def _next(self, request: RecordedRequest) -> Action | Awaitable[ActionLike]:
        try:
            step = next(self._steps)
        except StopIteration:
            raise ScriptError(
                f"the script ran out of actions after {self._consumed}; "
                f"request #{request.index} ({request.method} {request.path}) had no answer"
            ) from None
        self._consumed += 1
        if isinstance(step, _FIXED):
            return _as_action(step)
        result = step(request)
        return result if inspect.isawaitable(result) else _as_action(result)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (chosen at start when 0)."""
        if self._server is None:
            raise RuntimeError("ScriptedLM is not running; use `async with ScriptedLM(...)`")
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, ``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give clients: ``http://127.0.0.1:<port>/v1``."""
        return f"{self.url}/v1"

    async def start(self: _S) -> _S:
        """Start listening (idempotent)."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: Connection(self, next(self._ids)), self.host, self._port, backlog=1024
            )
            self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop at once: abort every connection, including hung and delayed requests."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        for count, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ScriptError(f"the server stopped before {count} requests"))
        self._waiters.clear()

    async def __aenter__(self: _S) -> _S:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._strict and self.errors and exc is None:
            raise ScriptError("ScriptedLM script failed: " + "; ".join(self.errors))

    async def wait_for_requests(self, count: int = 1) -> list[RecordedRequest]:
        """Wait until ``count`` requests have arrived; return the recorded requests."""
        if not self._record:
            raise ConfigError("wait_for_requests needs ScriptedLM(record=True)")
        if self._count < count:
            if self._server is None:
                raise ScriptError(f"the server is not running and has had {self._count} requests")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((count, waiter))
            await waiter
        return list(self.requests)

    # -- serving (called by connections) ------------------------------------------------------

    def connection_opened(self, connection: Connection) -> None:
        """Track a new connection, so that stopping can abort it."""
        self._connections.add(connection)

    def connection_closed(self, connection: Connection) -> None:
        """Forget a closed connection."""
        self._connections.discard(connection)

    def handle(self, connection: Connection, request: Request) -> None:
        """Record one request and answer it according to the script."""
        body: dict[str, Any] | None = None
        if request.content:
            try:
                decoded = _decode(request.content)
            except msgspec.DecodeError:
                decoded = None
            body = decoded if isinstance(decoded, dict) else None
        recorded = RecordedRequest(
            index=self._count,
            method=request.method,
            path=request.path,
            headers=request.headers,
            content=request.content,
            body=body,
            connection=connection.ident,
            started_at=time.monotonic(),
        )
        self._count += 1
        if self._record:
            self.requests.append(recorded)
            if self._waiters:
                self._wake_waiters()
        if request.path in _CHAT_PATHS and request.method == "POST":
            self._run_script(connection, recorded)
        elif request.path in _MODEL_PATHS and request.method == "GET":
            recorded.finished_at = connection.respond(200, model_list(self.model))
        else:
            message = (
                "ScriptedLM serves POST /v1/chat/completions and GET /v1/models, "
                f"not {request.method} {request.path}"
            )
            status = 405 if request.path in _CHAT_PATHS | _MODEL_PATHS else 404
            recorded.finished_at = connection.respond(status, error_body(status, message))

    def _wake_waiters(self) -> None:
        waiting = []
        for count, waiter in self._waiters:
            if count <= self._count:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((count, waiter))
        self._waiters = waiting

    def _run_script(self, connection: Connection, request: RecordedRequest) -> None:
        try:
            action = self._next(request)
        except Exception as exc:
            self._script_failed(connection, request, exc)
            return
        if isinstance(action, ACTION_TYPES):
            self._perform(connection, request, action)
            return
        task = asyncio.get_running_loop().create_task(
            self._await(connection, request, action), name=f"dspex:scripted-lm #{request.index}"
        )
        connection.pending = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await(
        self, connection: Connection, request: RecordedRequest, awaitable: Awaitable[ActionLike]
    ) -> None:
        try:
            action = _as_action(await awaitable)
        except Exception as exc:
            self._script_failed(connection, request, exc)
        else:
            self._perform(connection, request, action)

    async def _stream(self, connection: Connection, request: RecordedRequest, reply: Reply) -> None:
        """Send ``reply`` as server-sent events, ``chunk_delay`` apart; drop mid-stream after
        ``drop_after`` events if the script says so."""
        events = chat_completion_events(reply, request.body, self.model)
        connection.start_stream()
        try:
            for sent, event in enumerate(events):
                if reply.drop_after is not None and sent >= reply.drop_after:
                    request.finished_at = connection.drop()
                    return
                if sent and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                connection.send(event)
        except asyncio.CancelledError:
            if not connection.open:  # the client left mid-stream: the stream stopped there
                request.disconnected = True
                request.finished_at = time.monotonic()
            raise
        request.finished_at = connection.end_stream()

    def _script_failed(
        self, connection: Connection, request: RecordedRequest, exc: Exception
    ) -> None:
        reason = str(exc) if isinstance(exc, ScriptError) else f"the script raised {exc!r}"
        self.errors.append(reason)
        logger.error("ScriptedLM: %s", reason)
        request.finished_at = connection.respond(500, error_body(500, f"ScriptedLM: {reason}"))

    def _perform(self, connection: Connection, request: RecordedRequest, action: Action) -> None:
        request.action = action
        if isinstance(action, Hang):
            return
        if action.latency > 0:
            connection.pending = asyncio.get_running_loop().call_later(
                action.latency, self._answer, connection, request, action
            )
        else:
            self._answer(connection, request, action)

    def _answer(
        self,
        connection: Connection,
        request: RecordedRequest,
        action: Reply | Status | Malformed | Drop,
    ) -> None:
        if isinstance(action, Reply):
            if (request.body or {}).get("stream") is True:
                task = asyncio.get_running_loop().create_task(
                    self._stream(connection, request, action),
                    name=f"dspex:scripted-lm #{request.index}",
                )
                connection.pending = task
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            body = chat_completion(action, request.body, self.model)
            headers = []
            if self.gzip and "gzip" in request.headers.get("accept-encoding", ""):
                body = gzip.compress(body)
                headers.append(("Content-Encoding", "gzip"))
            request.finished_at = connection.respond(200, body, headers=headers)
        elif isinstance(action, Status):
            retry_after = action.retry_after
            if isinstance(retry_after, (int, float)):
                retry_after = f"{retry_after:g}"
            headers = [] if retry_after is None else [("Retry-After", retry_after)]
            body = status_body(action)
            request.finished_at = connection.respond(action.code, body, headers=headers)
        elif isinstance(action, Malformed):
            body = action.body.encode()
            request.finished_at = connection.respond(
                action.status, body, content_type=action.content_type
            )
        else:
            request.finished_at = connection.drop()
