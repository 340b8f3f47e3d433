"""Worker processes forked from one process that has imported DSPy once: the zygote.

Importing DSPy and LiteLLM takes seconds and ~250 MB; a worker started as a new interpreter
would pay that on every start and restart. The zygote (``python -m dspex.workers._main``,
one per service process, started on the first worker's start) pays it once, then forks each
worker: a worker starts in milliseconds and shares the imported modules' memory with its
siblings, copy on write.

The service and the zygote talk over a Unix socket: the service sends a spawn request (its
``sys.path``, working directory and environment, so the worker imports and reads what the
service would) with the worker's end of a new socket pair attached; the zygote forks, and
answers the child's pid with the read end of a pipe on which it writes the child's exit code
once it has reaped it.
The worker speaks frames (:mod:`dspex.workers._frames`) on its socket.

Nothing outlives the service: the zygote exits when its socket to the service closes (the
service exited, however it died), and each worker dies with the zygote (``PR_SET_PDEATHSIG``)
and exits when its own socket closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import msgspec

from dspex.workers._frames import FromWorker, ToWorker, WorkerGone, frame
from dspex.workers._link import FrameLink

#: The length of a request, and the pid or exit code of an answer (the zygote's messages).
INT = struct.Struct(">i")
#: How long the zygote may take to import DSPy and say it serves.
START_TIMEOUT = 120.0


class Spawn(msgspec.Struct, frozen=True):
    """What a new worker starts from: the service's import path, working directory and
    environment as they are when it starts (as a new subprocess would see them)."""

    path: list[str]
    cwd: str
    env: dict[str, str]


class WorkerProcess:
    """A worker forked by the zygote, seen from the service: its pid, the stream of its
    frames, and its exit code once the zygote has reaped it (None if the zygote died first)."""

    def __init__(self, pid: int, sock: socket.socket, status: int):
        self.pid = pid
        self._sock = sock
        self._status_fd = status
        self.returncode: int | None = None
        self._exited: asyncio.Future[int | None] | None = None
        self._link = FrameLink()

    async def open(self) -> None:
        """Attach the worker's socket and exit status to the running event loop."""
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: self._link, sock=self._sock)
        exited = self._exited = loop.create_future()
        status = os.fdopen(self._status_fd, "rb", buffering=0)

        def on_status() -> None:
            data = status.read(INT.size)
            loop.remove_reader(status.fileno())
            status.close()
            code = INT.unpack(data)[0] if len(data) == INT.size else None
            self.returncode = code
            if not exited.done():
                exited.set_result(code)

        os.set_blocking(self._status_fd, False)
        loop.add_reader(status.fileno(), on_status)

    def send(self, message: ToWorker) -> None:
        """Send ``message`` to the worker."""
        self._link.send(frame(message))

    async def receive(self) -> FromWorker:
        """The worker's next message; WorkerGone once it has ended."""
        msg = await self._link.receive()
        if msg is None:
            raise WorkerGone(await self.wait())
        return msg

    async def wait(self) -> int | None:
        """The exit code (negative: the signal that killed it), once the worker has ended."""
        assert self._exited is not None
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        """SIGKILL the worker, unless it has been reaped already."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def close(self, timeout: float) -> None:
        """Close its socket (the worker exits at end of file); kill it if it has not ended
        ``timeout`` seconds later."""
        if self.returncode is None:
            self._link.close()
            try:
                await asyncio.wait_for(self.wait(), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                self.kill()
                await self.wait()


class Zygote:
    """The service's handle on the zygote process; :func:`spawn` uses one per process."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dspex.workers._main", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self.sock = ours
        ours.settimeout(START_TIMEOUT)
        try:
            if ours.recv(1) != b"R":
                raise OSError("the dspy worker zygote exited while importing DSPy")
        except OSError:  # that, or no answer within START_TIMEOUT
            self.proc.kill()
            self.close()
            raise
        ours.settimeout(None)

    def spawn(self) -> tuple[int, socket.socket, int]:
        """Fork a worker: its pid, the service's end of its socket, its exit-status pipe."""
        ours, theirs = socket.socketpair()
        try:
            request = msgspec.msgpack.encode(Spawn(list(sys.path), os.getcwd(), dict(os.environ)))
            socket.send_fds(self.sock, [INT.pack(len(request)), request], [theirs.fileno()])
        finally:
            theirs.close()
        data, fds, _, _ = socket.recv_fds(self.sock, INT.size, 1)
        if len(data) != INT.size or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            ours.close()
            raise OSError("the dspy worker zygote exited")
        return INT.unpack(data)[0], ours, fds[0]

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


_lock = threading.Lock()
_zygote: Zygote | None = None


def spawn() -> tuple[int, socket.socket, int]:
    """Fork a worker from this process's zygote, starting the zygote first if it is not
    running (or has died). Blocks: call it in a thread. Raises OSError when no zygote starts."""
    global _zygote
    with _lock:
        for attempt in range(2):
            if _zygote is None:
                _zygote = Zygote()
            try:
                return _zygote.spawn()
            except OSError:
                _zygote.close()
                _zygote = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _discard(spawned: concurrent.futures.Future[tuple[int, socket.socket, int]]) -> None:
    if spawned.exception() is None:
        _, sock, status = spawned.result()
        sock.close()
        os.close(status)


def zygote_pid() -> int | None:
    """The pid of this process's zygote, if one has been started."""
    zygote = _zygote
    return None if zygote is None else zygote.proc.pid


async def start_worker() -> WorkerProcess:
    """A new worker, forked off the event loop (the first one waits for the zygote's start).

    The fork is asked for from a daemon thread of its own: a zygote still importing DSPy when
    the service exits must not hold up its exit (the zygote then exits too)."""
    spawned: concurrent.futures.Future[tuple[int, socket.socket, int]]
    spawned = concurrent.futures.Future()
    spawned.set_running_or_notify_cancel()  # so that a cancelled wait cannot cancel it

    def run() -> None:
        try:
            spawned.set_result(spawn())
        except BaseException as exc:
            spawned.set_exception(exc)

    threading.Thread(target=run, name="dspex-worker-spawn", daemon=True).start()
    try:
        pid, sock, status = await asyncio.wrap_future(spawned)
    except asyncio.CancelledError:
        spawned.add_done_callback(_discard)  # forked for nobody: closed, so that it exits
        raise
    worker = WorkerProcess(pid, sock, status)
    await worker.open()
    return worker
