"""Bounded mailboxes and their overflow policies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspex.actors import Actor, ActorRef, Caller, Node, Overflow
from dspex.errors import ConfigError, MailboxFull, Overloaded, Timeout


class Gate(Actor):
    """Holds every message until the event given to init is set."""

    async def init(self, *args: Any) -> None:
        self.gate: asyncio.Event = args[0]

    async def handle_call(self, msg: object, caller: Caller) -> object:
        await self.gate.wait()
        return msg

    async def handle_cast(self, msg: object) -> None:
        await self.gate.wait()


async def _full(
    node: Node, overflow: Overflow
) -> tuple[ActorRef, asyncio.Event, list[asyncio.Future[object]]]:
    """A Gate actor busy with one call and a mailbox (capacity 2) holding two more."""
    gate = asyncio.Event()
    ref = await node.spawn(Gate, gate, mailbox_size=2, overflow=overflow)
    busy = asyncio.ensure_future(ref.call("busy"))
    await asyncio.sleep(0)  # the actor takes "busy" out of its mailbox and blocks on it
    queued = [asyncio.ensure_future(ref.call(i)) for i in range(2)]
    await asyncio.sleep(0)
    return ref, gate, [busy, *queued]


async def test_full_mailbox_raises_mailbox_full_by_default(node: Node) -> None:
    ref, gate, accepted = await _full(node, "raise")
    with pytest.raises(MailboxFull, match="full \\(2 messages\\)"):
        await ref.call("one too many")
    with pytest.raises(Overloaded):
        ref.cast("a cast too many")
    with pytest.raises(MailboxFull):
        ref.send("an info too many")
    gate.set()
    # Nothing that was accepted is lost.
    assert [await f for f in accepted] == ["busy", 0, 1]


async def test_full_mailbox_with_wait_policy_makes_callers_wait_for_room(
    node: Node,
) -> None:
    ref, gate, accepted = await _full(node, "wait")
    waiting = asyncio.ensure_future(ref.call("waited"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    with pytest.raises(MailboxFull):  # a cast never blocks, so it cannot wait
        ref.cast("x")
    gate.set()
    assert [await f for f in accepted] == ["busy", 0, 1]
    assert await waiting == "waited"


async def test_waiting_for_room_still_respects_the_call_timeout(node: Node) -> None:
    ref, gate, accepted = await _full(node, "wait")
    with pytest.raises(Timeout):
        await ref.call("late", timeout=0.02)
    gate.set()
    assert [await f for f in accepted] == ["busy", 0, 1]
    assert await ref.call("after") == "after"


async def test_invalid_mailbox_options_are_config_errors(node: Node) -> None:
    gate = asyncio.Event()
    with pytest.raises(ConfigError, match="mailbox_size"):
        await node.spawn(Gate, gate, mailbox_size=0)
    with pytest.raises(ConfigError, match="overflow"):
        await node.spawn(Gate, gate, overflow="drop")  # type: ignore[arg-type]
