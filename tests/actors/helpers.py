"""Small actors the tests share."""

from __future__ import annotations

import asyncio
from typing import Any

from dspex.actors import NOREPLY, Actor, Caller


class Recorder(Actor):
    """Replies to calls with its state and records every info message it gets."""

    async def init(self, *args: Any) -> None:
        self.args = args
        self.infos: asyncio.Queue[Any] = asyncio.Queue()
        self.count = 0

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "count":
            self.count += 1
            return self.count
        if msg == "args":
            return self.args
        if msg == "crash":
            raise RuntimeError("crash on request")
        if msg == "stuck":
            await asyncio.Event().wait()
        if msg == "next_info":  # deferred: the mailbox must keep flowing to receive the info

            async def next_info() -> None:
                caller.reply(await self.infos.get())

            self.start_task(next_info())
            return NOREPLY
        if isinstance(msg, tuple) and msg[0] == "stop":
            self.stop(msg[1])
            return "stopping"
        if isinstance(msg, tuple) and msg[0] == "do":
            return msg[1](self)
        if isinstance(msg, tuple) and msg[0] == "defer":
            delay = msg[1]

            async def later() -> None:
                await asyncio.sleep(delay)
                caller.reply(("deferred", delay))

            self.start_task(later())
            return NOREPLY
        return msg

    async def handle_cast(self, msg: Any) -> None:
        if msg == "crash":
            raise RuntimeError("crash on cast")
        self.count += 1

    async def handle_info(self, msg: Any) -> None:
        self.infos.put_nowait(msg)


class FailingInit(Actor):
    async def init(self, *args: Any) -> None:
        raise ValueError("init refused")


class Terminating(Actor):
    """Reports the reason its terminate got into the queue given to init."""

    async def init(self, *args: Any) -> None:
        self.reasons: asyncio.Queue[object] = args[0]

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "crash":
            raise RuntimeError("crash")
        return msg

    async def terminate(self, reason: object) -> None:
        self.reasons.put_nowait(reason)
