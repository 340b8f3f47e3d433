"""A subprocess whose output is read as it comes, for tests that run real servers."""

from __future__ import annotations

import asyncio
import re
from types import TracebackType


class Output:
    """Reads a subprocess's stdout (start it with ``stderr=STDOUT`` to get both) into
    :attr:`text`; :meth:`wait_for` waits until a pattern shows up in it.

    Use it as an async context manager: on the way out the process is killed if it still
    runs, and its output read to the end."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None, "start the process with stdout=PIPE"
        self.proc = proc
        self.text = ""
        self._more = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read(proc.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.text += line.decode()
            self._more.set()
        self._more.set()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` in the output, once there is one; AssertionError if
        the process closes its output first."""
        while not (match := re.search(pattern, self.text)):
            if self._reader.done():
                raise AssertionError(f"no {pattern!r} in the process's output:\n{self.text}")
            self._more.clear()
            await self._more.wait()
        return match

    async def __aenter__(self) -> Output:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._reader
