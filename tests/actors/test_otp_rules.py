"""Calls, stops, names and exit signals an actor aims at itself, as Elixir's tests and docs say.

Each test names the Elixir test (``lib/elixir/test/elixir/...``) or doc it follows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspex.actors import Actor, Caller, Node
from dspex.errors import CallingSelf, NoProc
from tests.actors.helpers import Recorder


class Selfish(Actor):
    """Does to itself what its call asks, and reports what happened."""

    async def init(self, *args: Any) -> None:
        self.journal: list[Any] = []

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "call_self":
            try:
                await self.ref.call("ping", timeout=None)
            except CallingSelf as exc:
                return ("refused", str(exc))
        if msg == "stop_self_with_node":
            try:
                await self.node.stop(self.ref)
            except CallingSelf:
                return "refused"
        if msg == "stop_and_reply":
            self.stop("normal")
            return "the reply"
        if msg == "exit_normal":
            self.journal.append("before")
            self.node.exit(self.ref, "normal")
            self.journal.append("after")  # never runs: the calling process has exited
            return "not sent"
        if msg == "journal":
            return self.journal
        return msg

    async def terminate(self, reason: object) -> None:
        self.journal.append(("terminate", reason))
        journals.append(list(self.journal))


journals: list[list[Any]] = []


async def test_an_actor_calling_itself_fails_at_once(node: Node) -> None:
    # gen_server_test.exs "call/3 exit messages": GenServer.call(self(), ...) exits
    # {:calling_self, ...} at once instead of waiting for its own reply.
    ref = await node.spawn(Selfish)
    verdict, message = await asyncio.wait_for(ref.call("call_self"), 1.0)  # with timeout=None
    assert verdict == "refused"
    assert "called itself" in message
    assert ref.alive
    assert await ref.call("ping") == "ping"


async def test_a_task_the_actor_owns_may_call_it(node: Node) -> None:
    # Not self: in Elixir a task is another process, and calling its owner is fine.
    ref = await node.spawn(Recorder)
    answer = await ref.call(("do", lambda actor: actor.start_task(actor.ref.call("count"))))
    assert await answer == 1


async def test_stopping_itself_with_node_stop_is_refused_and_the_actor_goes_on(
    node: Node,
) -> None:
    # gen_server_test.exs "stop/3": GenServer.stop(self()) inside the server exits
    # {:calling_self, ...}; caught, the server carries on.
    ref = await node.spawn(Selfish)
    assert await asyncio.wait_for(ref.call("stop_self_with_node"), 1.0) == "refused"
    assert ref.alive
    assert await ref.call("ping") == "ping"


async def test_stop_with_a_reply_runs_terminate_before_the_reply() -> None:
    # GenServer docs, handle_call/3: on {:stop, reason, reply, new_state} "terminate/2 is called
    # with reason reason ... Then, the reply is sent" (gen_server.erl replies in an `after`).
    journals.clear()
    node = Node()
    ref = await node.spawn(Selfish)
    assert await ref.call("stop_and_reply") == "the reply"
    assert journals == [[("terminate", "normal")]]  # already there when the reply arrived
    assert await ref.wait() == "normal"


async def test_stop_with_a_reply_replies_even_when_terminate_raises(node: Node) -> None:
    # gen_server.erl: `try terminate(...) after reply(From, Reply) end`.
    class Failing(Selfish):
        async def terminate(self, reason: object) -> None:
            raise RuntimeError("cleanup failed")

    ref = await node.spawn(Failing)
    assert await ref.call("stop_and_reply") == "the reply"
    assert isinstance(await ref.wait(), RuntimeError)


async def test_stopping_an_actor_that_already_exited_raises_noproc(node: Node) -> None:
    # gen_server_test.exs "stop/3": GenServer.stop(stopped_pid) exits {:noproc, ...}.
    ref = await node.spawn(Recorder)
    assert await node.stop(ref) == "normal"
    with pytest.raises(NoProc, match="not alive"):
        await node.stop(ref)


async def test_unregistering_an_unknown_name_raises(node: Node) -> None:
    # Process.unregister/1 docs: "Fails with ArgumentError if the name is not registered".
    with pytest.raises(NoProc, match="no actor is registered under that name"):
        node.unregister("nobody")
    ref = await node.spawn(Recorder, name="once")
    node.unregister("once")
    with pytest.raises(NoProc):
        node.unregister("once")
    assert ref.alive
    assert ref.name is None


async def test_exit_normal_to_itself_ends_the_calling_actor(node: Node) -> None:
    # process_test.exs "exit(self(), :normal) causes the calling process to exit"; Process.exit/2
    # docs: ":normal ... will not exit unless it is the calling process".
    journals.clear()
    ref = await node.spawn(Selfish)
    with pytest.raises(Exception, match="normal"):  # ActorExited: no reply was sent
        await ref.call("exit_normal")
    assert await ref.wait() == "normal"
    assert journals == []  # exited, as by a signal: no terminate, nothing after the exit


async def test_exit_normal_from_outside_is_ignored_and_a_trapping_actor_gets_a_message(
    node: Node,
) -> None:
    # process_test.exs "exit(pid, :normal) does not cause the target process to exit"; a
    # trapping caller gets {:EXIT, self(), :normal} as a message.
    plain = await node.spawn(Recorder)
    node.exit(plain, "normal")
    assert plain.alive
    trapping = await node.spawn(Recorder, trap_exit=True)
    await trapping.call(("do", lambda actor: actor.node.exit(actor.ref, "normal")))
    exit_message = await trapping.call("next_info")
    assert (exit_message.actor, exit_message.reason) == (None, "normal")
    assert trapping.alive
