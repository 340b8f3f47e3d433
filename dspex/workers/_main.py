"""The worker side: the zygote process (``python -m dspex.workers._main``) and the workers it
forks (see :mod:`dspex.workers._zygote` for the service's side).

The zygote imports DSPy and LiteLLM, says so, then forks a worker per request and reports
each one's exit code. A worker reads frames from its socket to the service and writes frames
back on it, says :class:`~dspex.workers._frames.Ready`, and runs each call as a task of its
own event loop on the in-process dspy implementation, many at once (:class:`Worker`, which a
Ray actor runs too). It exits when the socket reaches end of file (the service closed it, or
died).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import cloudpickle
import msgspec

from dspex.backends.dspy import DSPyBackend, import_dspy
from dspex.backends.dspy._cache import CACHING
from dspex.cache import Claims
from dspex.errors import DSPexError, ModuleError, Timeout
from dspex.lm._launcher import die_with_parent
from dspex.streaming._call import STREAM, CallStream
from dspex.telemetry import CACHE_HITS
from dspex.workers._frames import (
    HEADER,
    Build,
    Cancel,
    Done,
    Drop,
    Events,
    Failed,
    Found,
    FromWorker,
    Lookup,
    Pull,
    Ready,
    Run,
    SpanRecord,
    Store,
    ToWorker,
    frame,
    to_worker,
)
from dspex.workers._zygote import INT, Spawn

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss() -> int:
    """This process's resident memory in bytes."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:  # not Linux: the peak instead
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class LinkedCache:
    """A worker process's link to the service's response cache (a
    :class:`~dspex.cache.Claims`): a claim is a :class:`Lookup` frame, answered by
    :class:`Found`; a fill, a :class:`Store`. A claim whose waiter was cancelled and that the
    service then made this worker's to send is given back at once (``Store(key, None)``), so
    the identical requests waiting in the service send their own."""

    def __init__(self, send: Callable[[FromWorker], None]):
        self.send = send
        self.ids = itertools.count(1)
        self.waiting: dict[int, tuple[asyncio.Future[bytes | None], bytes]] = {}

    async def claim(self, key: bytes) -> bytes | None:
        """The reply the service keeps for ``key``, or None: send the request, then fill."""
        claim_id = next(self.ids)
        answer = asyncio.get_running_loop().create_future()
        self.waiting[claim_id] = (answer, key)
        self.send(Lookup(claim_id, key))
        reply: bytes | None = await answer
        return reply

    def fill(self, key: bytes, reply: bytes | None) -> None:
        """The reply to a request this worker claimed (None: none to keep)."""
        self.send(Store(key, reply))

    def found(self, message: Found) -> None:
        """The service answered a claim."""
        answer, key = self.waiting.pop(message.id, (None, b""))
        if answer is None:
            return
        if answer.done():  # its waiter is gone (cancelled)
            if message.reply is None:
                self.send(Store(key, None))
        else:
            answer.set_result(message.reply)


class Worker:
    """The worker's state: its modules (built on first use) and its calls in flight; ``send``
    delivers each answer (a frame on the socket, or a Ray call's result)."""

    def __init__(
        self,
        send: Callable[[FromWorker], None],
        backend: DSPyBackend,
        cache: LinkedCache | None = None,
    ):
        self.send = send
        self.backend = backend
        self.cache = cache
        self.specs: dict[int, bytes] = {}
        self.instances: dict[int, asyncio.Future[Any]] = {}
        self.tasks: dict[int, asyncio.Task[Any]] = {}  # each call's work, by id
        self.answering: set[asyncio.Task[None]] = set()  # what answers each call
        self.streams: dict[int, CallStream] = {}  # each streamed call's events, by id
        self.hits: dict[int, int] = {}  # a traced call's LM requests answered from the cache

    def handle(self, message: ToWorker) -> None:
        if isinstance(message, Run):
            loop = asyncio.get_running_loop()
            if message.stream:
                self.streams[message.id] = CallStream()
            call = loop.create_task(self.call(message))
            self.tasks[message.id] = call
            expired: list[bool] = []
            if message.timeout is not None:  # the deadline, here too: stop its work at it
                timer = loop.call_later(message.timeout, _expire, call, expired)
                call.add_done_callback(lambda _: timer.cancel())
            started = time.time_ns()
            answering = self.answer(message, call, expired, started)
            self.answering.add(answer := loop.create_task(answering))
            answer.add_done_callback(self.answering.discard)
        elif isinstance(message, Found):
            if self.cache is not None:
                self.cache.found(message)
        elif isinstance(message, Pull):
            self._spawn(self.pull(message))
        elif isinstance(message, Cancel):
            running = self.tasks.get(message.id)
            if running is not None:
                running.cancel()
        elif isinstance(message, Build):
            self.specs[message.key] = message.spec
            if message.id:
                self._spawn(self.build(message))
        elif isinstance(message, Drop):
            self.specs.pop(message.key, None)
            self.instances.pop(message.key, None)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.answering.add(task)
        task.add_done_callback(self.answering.discard)

    async def pull(self, message: Pull) -> None:
        """Answer with the next events of a streamed call (the end, if it is gone)."""
        stream = self.streams.get(message.call)
        events, end = await stream.take() if stream is not None else ([], True)
        self.send(Events(message.id, events, end))

    def instance(self, key: int) -> asyncio.Future[Any]:
        """Module ``key``, built once (concurrent first calls share the build)."""
        built = self.instances.get(key)
        if built is None:
            spec = cloudpickle.loads(self.specs[key])
            built = self.instances[key] = asyncio.ensure_future(self.backend.create(spec))
        return built

    async def build(self, message: Build) -> None:
        """Build module ``key`` now and say whether that worked (a module that does not
        build is forgotten)."""
        try:
            await self.instance(message.key)
        except Exception as exc:
            self.specs.pop(message.key, None)
            self.instances.pop(message.key, None)
            self.send(self.failed(message.id, as_dspex_error(exc)))
        else:
            self.send(Done(message.id, cloudpickle.dumps(None), rss()))

    async def call(self, message: Run) -> Any:
        stream = self.streams.get(message.id)
        if stream is None:
            instance = await self.instance(message.key)
            inputs = cloudpickle.loads(message.inputs)
            result = await self.backend.execute(instance, inputs, message.options)
            caching = CACHING.get()  # set by execute in this task: its cache hits
            if caching is not None and caching.hits and message.trace is not None:
                self.hits[message.id] = caching.hits
            return result
        STREAM.set(stream)  # this task's context: the backend streams to it
        try:
            instance = await self.instance(message.key)
            inputs = cloudpickle.loads(message.inputs)
            result = await self.backend.execute(instance, inputs, message.options)
        except Exception:
            await stream.drained()  # the events before the failure reach the caller first
            raise
        else:
            await stream.drained()  # and its events before its answer
            return result
        finally:
            stream.discard()
            self.streams.pop(message.id, None)

    async def answer(
        self, message: Run, call: asyncio.Task[Any], expired: list[bool], started: int
    ) -> None:
        """Answer ``message`` once its call is over: not before, whatever cancelled it (a call
        stuck in a thread ends when the thread returns; until then the service sees it run).
        A traced call's answer carries its span, from its arrival to its end."""
        await asyncio.wait({call})
        self.tasks.pop(message.id, None)
        result: Done | Failed
        if call.cancelled():
            error = (
                Timeout(f"the call passed its deadline ({message.timeout:.3g} s)")
                if expired
                else Timeout("the call was cancelled: its caller stopped waiting")
            )
            result = self.failed(message.id, error)
        elif (exc := call.exception()) is not None:
            result = self.failed(message.id, as_dspex_error(exc))
        else:
            try:
                result = Done(message.id, cloudpickle.dumps(call.result()), rss())
            except Exception as exc:  # a prediction that does not pickle
                result = self.failed(
                    message.id,
                    ModuleError(f"the prediction cannot be sent back: {type(exc).__name__}: {exc}"),
                )
        if message.trace is not None:
            failure = None
            if isinstance(result, Failed):
                raised = None if call.cancelled() else call.exception()
                failure = "Timeout" if raised is None else type(as_dspex_error(raised)).__name__
            attributes: dict[str, str | int | float | bool] = {"dspex.worker.pid": os.getpid()}
            hits = self.hits.pop(message.id, 0)
            if hits:
                attributes[CACHE_HITS] = hits
            span = SpanRecord("dspex.dspy.call", started, time.time_ns(), attributes, failure)
            result = msgspec.structs.replace(result, span=span)
        self.send(result)

    @staticmethod
    def failed(call_id: int, error: DSPexError) -> Failed:
        try:
            data = cloudpickle.dumps(error)
        except Exception:  # an attribute that does not pickle: the message and type survive
            data = cloudpickle.dumps(ModuleError(f"{type(error).__name__}: {error}"))
        cause = error.__cause__
        text = None if cause is None else "".join(traceback.format_exception(cause)).rstrip()
        return Failed(call_id, data, rss(), text)


def as_dspex_error(exc: BaseException) -> DSPexError:
    """``exc`` if it is a dspex error, else a ModuleError raised from it."""
    if isinstance(exc, DSPexError):
        return exc
    error = ModuleError(f"the dspy worker failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _expire(call: asyncio.Task[Any], expired: list[bool]) -> None:
    expired.append(True)
    call.cancel()


def read_frames(fd: int, deliver: Callable[[ToWorker | None], None]) -> None:
    """Read frames from ``fd`` until end of file (then ``deliver(None)``); runs in a thread.
    A connection reset is an end of file too: the service closed its end while frames this
    worker sent were still unread (stopping, or killing the worker)."""

    def exactly(n: int) -> bytes | None:
        chunks, left = [], n
        while left:
            try:
                chunk = os.read(fd, left)
            except OSError:  # reset by the service
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    while True:
        header = exactly(HEADER.size)
        body = None if header is None else exactly(HEADER.unpack(header)[0])
        if body is None:
            deliver(None)
            return
        deliver(to_worker.decode(body))


#: The worker's cyclic garbage collector thresholds: Python's default (700, 10, 10) runs a
#: collection every 700 allocations, and under load a DSPy call (LiteLLM's request objects,
#: pydantic models) allocates thousands: ~1.7 ms of every call went to the collector. A worker
#: is a process of its own, so it can collect less often (its memory is watched: max_rss_mb).
GC_THRESHOLDS = (50_000, 20, 20)


#: How much lower a worker's CPU priority is than the service's (``nice``): where they compete
#: for the cores, the service's event loop (every request's latency) comes first.
NICENESS = 5


def tune_gc() -> None:
    """Collect less often in a worker (see :data:`GC_THRESHOLDS`)."""
    gc.set_threshold(*GC_THRESHOLDS)


def worker_backend(cache: Claims | None) -> DSPyBackend:
    """The in-process dspy implementation a worker runs its calls on: sync modules in 32
    threads, and a cancelled call ends when its thread does; LM replies from ``cache``."""
    return DSPyBackend(gc_freeze=True, finish_threads=True, cache=cache)


async def serve(fd: int) -> None:
    """Serve the frames of socket ``fd`` until it closes (then exit the process). The calls'
    LM requests use the service's response cache (a service without one answers every
    claim with None)."""
    await import_dspy(gc_freeze=True)
    tune_gc()
    os.nice(NICENESS)

    loop = asyncio.get_running_loop()
    unsent: list[bytes] = []

    def send(message: FromWorker) -> None:
        """Send ``message`` once the running callback has returned: what is sent in one turn
        of the loop goes in one write, so the service reads it at once. Called on the loop's
        thread only (DSPy's threads hop to it to claim and fill the cache)."""
        if not unsent:
            loop.call_soon(flush)
        unsent.append(frame(message))

    def flush() -> None:
        data = memoryview(b"".join(unsent))
        unsent.clear()
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:  # a broken pipe: the service closed the socket, or died
            os._exit(0)  # as at end of file, and before a traceback could reach its logs

    cache = LinkedCache(send)
    worker = Worker(send, worker_backend(cache), cache)
    ended = loop.create_future()

    def deliver(message: ToWorker | None) -> None:
        if message is None:  # end of file: the service closed the socket, or died
            os._exit(0)
        loop.call_soon_threadsafe(worker.handle, message)

    threading.Thread(target=read_frames, args=(fd, deliver), daemon=True).start()
    worker.send(Ready(os.getpid()))
    await ended


# -- the zygote -------------------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(left)
        except OSError:  # reset by the service: its end is closed, as at end of file
            os._exit(0)
        if not chunk:
            os._exit(0)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _serve(sock: socket.socket) -> None:
    """Fork a worker per request; report each child's exit code on its status pipe."""
    statuses: dict[int, int] = {}  # child pid -> the write end of its status pipe
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through wake_w
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(statuses)
        if sock.fileno() not in readable:
            continue
        header, fds, _, _ = socket.recv_fds(sock, INT.size, 1)
        if len(header) < INT.size or not fds:  # the service closed the socket, or died
            os._exit(0)
        request = msgspec.msgpack.decode(_recv_exactly(sock, INT.unpack(header)[0]), type=Spawn)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (sock.fileno(), wake_r, wake_w, read_end, write_end, *statuses.values()):
                os.close(fd)
            _run_worker(fds[0], request)
        os.close(fds[0])
        statuses[pid] = write_end
        socket.send_fds(sock, [INT.pack(pid)], [read_end])
        os.close(read_end)


def _reap(statuses: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = statuses.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, INT.pack(os.waitstatus_to_exitcode(status)))
            os.close(fd)


def _run_worker(fd: int, request: Spawn) -> None:
    """In the forked child: serve frames on ``fd`` until it closes; never returns."""
    code = 1
    try:
        sys.path[:] = request.path
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        die_with_parent(signal.SIGKILL)
        asyncio.run(serve(fd))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def main() -> None:
    """The zygote: import what a worker runs, say so, then fork workers until the service
    closes the socket (``argv[1]`` is its file descriptor)."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.dup2(2, 1)  # what a program prints goes to stderr, not anywhere near the frames
    from dspex._dspy_import import warm

    warm(gc_freeze=True).result()  # DSPy and LiteLLM, then gc.freeze(): shared by every fork
    for thread in threading.enumerate():  # fork only a single-threaded process
        if thread is not threading.main_thread():
            thread.join()
    sock.sendall(b"R")
    _serve(sock)


if __name__ == "__main__":
    main()
