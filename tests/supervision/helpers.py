"""Children whose life is recorded in a shared journal, and an event queue for supervisors."""

from __future__ import annotations

import asyncio
from typing import Any

from dspex.actors import Actor, Caller
from dspex.supervision import ChildSpec, SupervisorEvent


class Worker(Actor):
    """Records ("start", id) and ("stop", id, reason) in the journal list given to init."""

    async def init(self, *args: Any) -> None:
        self.id, self.journal = args
        self.count = 0
        self.journal.append(("start", self.id))

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "count":
            self.count += 1
            return self.count
        if msg == "crash":
            raise RuntimeError(f"{self.id} crashed")
        if msg == "exit_normally":
            self.stop("normal")
            return "bye"
        return msg

    async def terminate(self, reason: object) -> None:
        self.journal.append(("stop", self.id, reason))


class Stubborn(Worker):
    """Ignores the graceful stop for a long time (to test shutdown timeouts)."""

    async def terminate(self, reason: object) -> None:
        await asyncio.sleep(30)


def worker(id: str, journal: list[Any], **options: Any) -> ChildSpec:
    return ChildSpec(id=id, start=Worker, args=(id, journal), name=id, **options)


class Events:
    """Collects supervisor events; ``await events.next()`` waits for the next one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[SupervisorEvent] = asyncio.Queue()

    def __call__(self, event: SupervisorEvent) -> None:
        self.queue.put_nowait(event)

    async def next(self) -> SupervisorEvent:
        return await asyncio.wait_for(self.queue.get(), 5)
