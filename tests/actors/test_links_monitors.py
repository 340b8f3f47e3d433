"""Links, trap_exit, monitors and exit signals, with OTP's rules."""

from __future__ import annotations

from typing import Any

import pytest

from dspex.actors import Actor, ActorRef, Down, Exit, Node
from dspex.errors import ActorExited
from tests.actors.helpers import Recorder


def _do(fn: Any) -> tuple[str, Any]:
    """A call message that runs ``fn(actor)`` inside the actor."""
    return ("do", fn)


async def _linked_pair(node: Node, trap: bool) -> tuple[ActorRef, ActorRef]:
    a = await node.spawn(Recorder, trap_exit=trap)
    b = await node.spawn(Recorder)
    await a.call(_do(lambda actor: actor.link(b)))
    return a, b


async def test_abnormal_exit_propagates_over_a_link(node: Node) -> None:
    a, b = await _linked_pair(node, trap=False)
    with pytest.raises(ActorExited):
        await b.call("crash")
    reason = await a.wait()
    assert isinstance(reason, RuntimeError)  # a dies with b's reason


async def test_links_are_two_way(node: Node) -> None:
    a, b = await _linked_pair(node, trap=False)
    with pytest.raises(ActorExited):
        await a.call("crash")
    assert isinstance(await b.wait(), RuntimeError)


async def test_normal_exit_does_not_kill_linked_actors(node: Node) -> None:
    a, b = await _linked_pair(node, trap=False)
    await node.stop(b)
    assert await b.wait() == "normal"
    assert await a.call("count") == 1


async def test_shutdown_exit_kills_linked_actors_that_do_not_trap(node: Node) -> None:
    a, b = await _linked_pair(node, trap=False)
    await node.stop(b, reason="shutdown")
    assert await a.wait() == "shutdown"


async def test_trap_exit_turns_exit_signals_into_messages(node: Node) -> None:
    a, b = await _linked_pair(node, trap=True)
    with pytest.raises(ActorExited):
        await b.call("crash")
    msg = await a.call("next_info")
    assert isinstance(msg, Exit)
    assert msg.actor is b
    assert isinstance(msg.reason, RuntimeError)
    assert a.alive
    await node.stop(b) if b.alive else None
    # a normal exit reaches a trapping actor as a message too
    c = await node.spawn(Recorder)
    await a.call(_do(lambda actor: actor.link(c)))
    await node.stop(c)
    assert await a.call("next_info") == Exit(c, "normal")


async def test_unlink_stops_propagation(node: Node) -> None:
    a, b = await _linked_pair(node, trap=False)
    await a.call(_do(lambda actor: actor.unlink(b)))
    with pytest.raises(ActorExited):
        await b.call("crash")
    assert await a.call("count") == 1


async def test_linking_to_a_dead_actor_gives_noproc(node: Node) -> None:
    a = await node.spawn(Recorder, trap_exit=True)
    b = await node.spawn(Recorder)
    await node.stop(b)
    await a.call(_do(lambda actor: actor.link(b)))
    assert await a.call("next_info") == Exit(b, "noproc")


async def test_exit_signal_kill_cannot_be_trapped(node: Node) -> None:
    a = await node.spawn(Recorder, trap_exit=True)
    node.exit(a, "kill")
    assert await a.wait() == "killed"


async def test_exit_signal_to_a_trapping_actor_is_a_message(node: Node) -> None:
    a = await node.spawn(Recorder, trap_exit=True)
    node.exit(a, "reload")
    assert await a.call("next_info") == Exit(None, "reload")
    b = await node.spawn(Recorder)
    node.exit(b, "normal")  # ignored by an actor that does not trap
    assert await b.call("count") == 1
    node.exit(b, "reload")
    assert await b.wait() == "reload"


async def test_monitor_delivers_down_with_the_reason(node: Node) -> None:
    watcher = await node.spawn(Recorder)
    target = await node.spawn(Recorder)
    mref = await watcher.call(_do(lambda actor: actor.monitor(target)))
    await node.stop(target, reason=("shutdown", "bye"))
    assert await watcher.call("next_info") == Down(mref, target, ("shutdown", "bye"))


async def test_monitors_are_one_way(node: Node) -> None:
    watcher = await node.spawn(Recorder)
    target = await node.spawn(Recorder)
    await watcher.call(_do(lambda actor: actor.monitor(target)))
    with pytest.raises(ActorExited):
        await watcher.call("crash")
    assert await target.call("count") == 1


async def test_monitor_on_a_dead_ref_gives_down_noproc_immediately(node: Node) -> None:
    watcher = await node.spawn(Recorder)
    target = await node.spawn(Recorder)
    await node.stop(target)
    mref = await watcher.call(_do(lambda actor: actor.monitor(target)))
    assert await watcher.call("next_info") == Down(mref, target, "noproc")


async def test_demonitor_stops_down_messages(node: Node) -> None:
    watcher = await node.spawn(Recorder)
    target = await node.spawn(Recorder)
    mref = await watcher.call(_do(lambda actor: actor.monitor(target)))
    await watcher.call(_do(lambda actor: actor.demonitor(mref)))
    await node.stop(target)
    other = await node.spawn(Recorder)
    mref2 = await watcher.call(_do(lambda actor: actor.monitor(other)))
    await node.stop(other)
    # the first DOWN never came: the next info is the second monitor's
    assert await watcher.call("next_info") == Down(mref2, other, "normal")


async def test_demonitor_flush_drops_a_queued_down(node: Node) -> None:
    class Flusher(Actor):
        async def init(self, *args: Any) -> None:
            self.target: ActorRef = args[0]

        async def handle_call(self, msg: Any, caller: Any) -> Any:
            mref = self.monitor(self.target)
            await self.node.stop(self.target)  # its DOWN is now queued behind this call
            self.demonitor(mref, flush=True)
            return len(self._proc.mailbox)

    target = await node.spawn(Recorder)
    flusher = await node.spawn(Flusher, target)
    assert await flusher.call("go") == 0


async def test_watcher_exit_removes_its_monitors(node: Node) -> None:
    watcher = await node.spawn(Recorder)
    target = await node.spawn(Recorder)
    await watcher.call(_do(lambda actor: actor.monitor(target)))
    await node.stop(watcher)
    assert not target._proc.monitors  # nothing kept for a dead watcher
