"""The embedded LM's server process, owned by a supervised actor.

``Runtime(lm=dspex.LM.local())`` starts :class:`LocalLMServer` under the root supervisor: it
assembles the weights if needed, starts llama-cpp-python's OpenAI-compatible server on 127.0.0.1,
waits until it answers, sends a warm-up request, and watches the process. If the process dies the
actor crashes and is restarted on the same port (so the runtime's LM stays valid; callers in
flight get connection errors that the LM client retries). Stopping the actor stops the process;
the process also dies with its parent (see ``_launcher``), so it is never orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from dspex.actors import Actor, Caller
from dspex.errors import ConfigError, LocalModelError
from dspex.lm._config import LM
from dspex.lm._local import (
    DEFAULT_MODEL,
    assemble,
    cache_dir,
    local_model,
    require_server,
)

log = logging.getLogger("dspex.lm.local")

_READY_TIMEOUT = 180.0
_STOP_TIMEOUT = 5.0


class LocalLM(msgspec.Struct, frozen=True, kw_only=True):
    """The embedded model as a Runtime's LM: ``Runtime(lm=dspex.LM.local())``.

    The defaults suit the 1.5B model: temperature 0, ``max_tokens`` 512 and a 120 s timeout
    (the CPU decodes about 30 tokens per second), 2 threads, a 4,096-token context.
    """

    model: str = DEFAULT_MODEL
    temperature: float = 0.0
    max_tokens: int = 512
    timeout: float = 120.0
    threads: int = 2
    context: int = 4096
    port: int | None = None

    def __post_init__(self) -> None:
        local_model(self.model)  # ConfigError for an unknown model
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"LocalLM.port must be a TCP port, got {self.port!r}")

    def lm(self, port: int) -> LM:
        """The LM configuration both implementations use against the server on ``port``."""
        return LM(
            f"openai/{self.model}",
            api_base=f"http://127.0.0.1:{port}/v1",
            api_key="local",
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            timeout=self.timeout,
        )


class ServerStatus(msgspec.Struct, frozen=True):
    """What ``status`` tells about the running model server."""

    model: str
    url: str
    pid: int
    started_at: float
    log: str


class _State:
    """Kept across restarts: the port, so the runtime's LM keeps pointing at the server."""

    __slots__ = ("port",)

    def __init__(self, port: int | None):
        self.port = port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of the server log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class LocalLMServer(Actor):
    """Owns one llama-cpp-python server process (see the module docstring)."""

    trap_exit = True  # its supervisor's shutdown is graceful: terminate stops the server

    async def init(self, *args: Any) -> None:
        spec, state = args
        self.spec: LocalLM = spec
        self.state: _State = state
        require_server()
        model = local_model(spec.model)
        path = await asyncio.to_thread(assemble, model)
        if state.port is None:
            state.port = free_port()
        self.url = f"http://127.0.0.1:{state.port}/v1"
        logs = cache_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{spec.model}.log"
        command = [
            sys.executable,
            "-m",
            "dspex.lm._launcher",
            *("--model", str(path), "--model_alias", spec.model),
            *("--n_threads", str(spec.threads), "--n_ctx", str(spec.context)),
            *("--host", "127.0.0.1", "--port", str(state.port)),
        ]
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE, stdout=out, stderr=out
            )
        try:
            await self._until_ready()
        except BaseException:
            await self._stop_process(0)
            raise
        self.started_at = time.time()
        self.stopping = False
        log.info("embedded LM %s serving at %s (pid %d)", spec.model, self.url, self.proc.pid)
        self.start_task(self._watch())

    async def _until_ready(self) -> None:
        import aiohttp

        deadline = time.monotonic() + _READY_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.returncode is not None:
                    raise LocalModelError(
                        f"the model server exited with code {self.proc.returncode} while "
                        f"starting; its log ({self.log_path}) ends with:\n{log_tail(self.log_path)}"
                    )
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(
                        f"{self.url}/models", timeout=aiohttp.ClientTimeout(2)
                    ) as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise LocalModelError(
                        f"the model server did not answer within {_READY_TIMEOUT:g} s"
                    )
                await asyncio.sleep(0.1)
            warm_up = {
                "model": self.spec.model,
                "messages": [{"role": "user", "content": "Say OK."}],
                "max_tokens": 2,
                "temperature": 0.0,
            }
            async with session.post(f"{self.url}/chat/completions", json=warm_up) as r:
                await r.read()

    async def _watch(self) -> None:
        try:
            code = await self.proc.wait()
        except asyncio.CancelledError:  # the actor was killed: never leave the process behind
            self.proc.kill()
            raise
        if self.stopping:
            return
        raise LocalModelError(
            f"the model server (pid {self.proc.pid}) exited with code {code}; restarting it"
        )

    async def _stop_process(self, grace: float) -> None:
        proc = self.proc
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate() if grace > 0 else proc.kill()
        try:
            await asyncio.wait_for(proc.wait(), grace or None)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "status":
            return ServerStatus(
                model=self.spec.model,
                url=self.url,
                pid=self.proc.pid,
                started_at=self.started_at,
                log=str(self.log_path),
            )
        return await super().handle_call(msg, caller)

    async def terminate(self, reason: object) -> None:
        self.stopping = True
        await self._stop_process(_STOP_TIMEOUT)
