"""handle_continue, init that ignores or stops, and the idle timeout, as Elixir's GenServer docs
say (``lib/elixir/lib/gen_server.ex``; each test quotes the rule it follows)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspex.actors import Actor, Caller, IdleTimeout, Node
from dspex.errors import ActorError, ConfigError, Ignored, StartError
from dspex.supervision import ChildSpec, DynamicSupervisor, Supervisor


class Continuing(Actor):
    """Continues from init and from calls; records the order things ran in."""

    async def init(self, journal: list[Any], cont: Any = None) -> None:
        self.journal = journal
        journal.append("init")
        if cont is not None:
            self.continue_with(cont)

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        self.journal.append(("call", msg))
        if isinstance(msg, tuple) and msg[0] == "continue":
            self.continue_with(msg[1])
        if msg == "twice":
            self.continue_with(1)
            self.continue_with(2)
        return msg

    async def handle_continue(self, arg: Any) -> None:
        self.journal.append(("continue", arg))
        if arg == "chain":
            self.continue_with("chained")
        if arg == "slow":
            await asyncio.sleep(0.05)
            self.journal.append(("continued", arg))


async def test_continue_from_init_runs_after_the_spawn_returned_and_before_any_message(
    node: Node,
) -> None:
    # "Returning {:ok, state, {:continue, continue_arg}} is similar to {:ok, state} except that
    # immediately after entering the loop, the handle_continue/2 callback will be invoked".
    journal: list[Any] = []
    ref = await node.spawn(Continuing, journal, "slow")
    assert ("continued", "slow") not in journal  # the spawn returned before it was done
    assert await ref.call("first") == "first"
    assert journal == ["init", ("continue", "slow"), ("continued", "slow"), ("call", "first")]


async def test_continue_from_a_call_runs_after_the_reply_before_the_next_message(
    node: Node,
) -> None:
    # handle_call's {:reply, reply, new_state, {:continue, arg}}: the reply is sent, then
    # handle_continue runs before the next message; continuations can chain.
    journal: list[Any] = []
    ref = await node.spawn(Continuing, journal)
    first = asyncio.ensure_future(ref.call(("continue", "chain")))
    second = asyncio.ensure_future(ref.call("second"))
    assert await first == ("continue", "chain")
    await second
    assert journal == [
        "init",
        ("call", ("continue", "chain")),
        ("continue", "chain"),
        ("continue", "chained"),
        ("call", "second"),
    ]


async def test_one_continuation_per_callback(node: Node) -> None:
    ref = await node.spawn(Continuing, [])
    with pytest.raises(Exception, match="already continues"):
        await ref.call("twice")
    assert isinstance(ref.exit_reason, ActorError)  # a bug in the callback: the actor crashed


async def test_continuing_without_handle_continue_crashes_the_actor(node: Node) -> None:
    # "If one is not implemented, the server will fail if a continue instruction is used."
    class Plain(Actor):
        async def handle_cast(self, msg: Any) -> None:
            self.continue_with(msg)

    ref = await node.spawn(Plain)
    ref.cast("x")
    reason = await ref.wait()
    assert isinstance(reason, ActorError)
    assert "does not implement handle_continue" in str(reason)


class Starter(Actor):
    """Its init ignores, stops or starts, as told."""

    terminated: list[object] = []

    async def init(self, how: str = "start") -> None:
        if how == "ignore":
            self.ignore()
        elif how == "stop":
            self.stop("no_config")

    async def terminate(self, reason: object) -> None:
        Starter.terminated.append(reason)

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "ignore":
            self.ignore()
        return msg


async def test_init_that_ignores_or_stops_does_not_start_and_runs_no_terminate(
    node: Node,
) -> None:
    # ":ignore will cause start_link/3 to return :ignore and the process will exit normally
    # without entering the loop or calling terminate/2"; "{:stop, reason} will [cause] the
    # process to exit with reason reason, without entering the loop or calling terminate/2".
    Starter.terminated.clear()
    with pytest.raises(Ignored) as ignored:
        await node.spawn(Starter, "ignore", name="ignoring")
    assert ignored.value.actor.exit_reason == "normal"
    with pytest.raises(StartError) as stopped:
        await node.spawn(Starter, "stop", name="stopping")
    assert not isinstance(stopped.value, Ignored)
    assert stopped.value.reason == "no_config"
    assert Starter.terminated == []
    assert node.whereis("ignoring") is None
    assert node.whereis("stopping") is None


async def test_ignore_outside_init_is_refused(node: Node) -> None:
    ref = await node.spawn(Starter)
    with pytest.raises(Exception, match="for init only"):
        await ref.call("ignore")


async def test_supervisors_keep_or_drop_a_child_that_ignores(node: Node) -> None:
    # Supervisor.start_child docs: on :ignore "the child specification is added to the
    # supervisor, the PID is set to :undefined"; DynamicSupervisor docs: "no child is added to
    # the supervision tree and this function returns :ignore too".
    sup = await Supervisor.start(node, [ChildSpec(id="quiet", start=Starter, args=("ignore",))])
    assert [(c.id, c.ref) for c in await sup.which_children()] == [("quiet", None)]
    assert await sup.start_child(ChildSpec(id="also", start=Starter, args=("ignore",))) is None
    assert (await sup.count_children())["specs"] == 2
    assert (await sup.count_children())["active"] == 0
    dynamic = await DynamicSupervisor.start(node)
    assert await dynamic.start_child(ChildSpec(id="quiet", start=Starter, args=("ignore",))) is None
    assert (await dynamic.count_children())["specs"] == 0


class Sleepy(Actor):
    """Asks for an idle timeout after each call (when told) and records what it got."""

    async def init(self, seconds: float) -> None:
        self.seconds = seconds
        self.events: list[Any] = []
        self.timeout_after(seconds)

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        self.events.append(msg)
        if msg == "keep":
            self.timeout_after(self.seconds)
        return list(self.events)

    async def handle_info(self, msg: Any) -> None:
        self.events.append(msg)


async def test_idle_timeout_fires_after_that_long_without_messages(node: Node) -> None:
    # "when the specified number of milliseconds have elapsed with no message arriving,
    # handle_info/2 is called with :timeout as the first argument".
    ref = await node.spawn(Sleepy, 0.02)
    await asyncio.sleep(0.1)
    assert await ref.call("look") == [IdleTimeout(0.02), "look"]
    await asyncio.sleep(0.1)
    assert await ref.call("again") == [IdleTimeout(0.02), "look", "again"]  # for one wait only


async def test_a_message_cancels_the_idle_timeout(node: Node) -> None:
    # "If any message arrives before the specified number of milliseconds elapse, the timeout
    # is cleared".
    ref = await node.spawn(Sleepy, 0.5)
    assert await ref.call("early") == ["early"]
    await asyncio.sleep(0.7)
    assert await ref.call("late") == ["early", "late"]
    assert await ref.call("keep") == ["early", "late", "keep"]  # asked again: it fires
    await asyncio.sleep(0.7)
    assert await ref.call("look") == ["early", "late", "keep", IdleTimeout(0.5), "look"]


async def test_idle_timeout_is_ignored_when_a_message_is_already_queued(node: Node) -> None:
    # "If the process has any message already waiting when the timeout() value is returned,
    # the timeout is ignored".
    class Queued(Sleepy):
        async def handle_call(self, msg: Any, caller: Caller) -> Any:
            if msg == "slow":
                self.timeout_after(0.0)
                await asyncio.sleep(0.3)  # the next call arrives meanwhile
            return await super().handle_call(msg, caller)

    ref = await node.spawn(Queued, 1000.0)
    slow = asyncio.ensure_future(ref.call("slow"))
    await asyncio.sleep(0.01)
    assert await ref.call("next") == ["slow", "next"]
    await slow
    await asyncio.sleep(0.05)
    assert await ref.call("look") == ["slow", "next", "look"]


def test_a_bad_idle_timeout_is_a_config_error() -> None:
    actor = Sleepy()
    with pytest.raises(ConfigError, match="seconds >= 0"):
        actor.timeout_after(-1)
