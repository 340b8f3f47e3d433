"""How a supervisor stops its children, and a dynamic child whose restart keeps failing.

Each test names the Elixir test (``lib/elixir/test/elixir/...``) or doc it follows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspex.actors import Actor, Caller, Node
from dspex.errors import ActorExited, ChildNotFound
from dspex.supervision import ChildSpec, DynamicSupervisor, Supervisor


class Busy(Actor):
    """A call that takes long; records in ``journal`` the messages it handled and terminate."""

    async def init(
        self, journal: list[Any], trap: bool, slow_terminate: float = 0.0, id: str = ""
    ) -> None:
        self.journal = journal
        self.id = id
        self.slow_terminate = slow_terminate
        self.set_trap_exit(trap)

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        if msg == "work":
            await asyncio.sleep(30)
        self.journal.append(msg)
        return msg

    async def terminate(self, reason: object) -> None:
        self.journal.append(("terminate", self.id, reason) if self.id else ("terminate", reason))
        await asyncio.sleep(self.slow_terminate)


def busy(id: str, journal: list[Any], trap: bool, **options: Any) -> ChildSpec:
    slow = options.pop("slow_terminate", 0.0)
    named = options.pop("named", False)
    return ChildSpec(id=id, start=Busy, args=(journal, trap, slow, id if named else ""), **options)


async def _busy_child(node: Node, spec: ChildSpec) -> tuple[Any, Any, Any]:
    sup = await DynamicSupervisor.start(node)
    ref = await sup.start_child(spec)
    work = asyncio.ensure_future(ref.call("work", timeout=None))
    queued = asyncio.ensure_future(ref.call("queued", timeout=None))
    await asyncio.sleep(0.01)  # "work" runs, "queued" waits in the mailbox
    return sup, ref, (work, queued)


@pytest.mark.parametrize(
    ("trap", "shutdown", "reason", "journal_after"),
    [
        # Supervisor docs: "If the child process is not trapping exits, the initial :shutdown
        # signal will terminate the child process immediately" (at once: past the 10 s timeout
        # it would be "killed"); dspex's choice, its terminate still runs (architecture page),
        # and the queued call is not handled.
        (False, 10.0, "shutdown", [("terminate", "shutdown")]),
        # GenServer.terminate/2 docs: terminate "is only called after the GenServer finishes
        # processing all messages which arrived in its mailbox prior to the exit signal": still
        # busy at the timeout, it is killed without terminate.
        (True, 0.05, "killed", []),
    ],
    ids=["does-not-trap", "traps"],
)
async def test_a_busy_child_stops_as_otp_says_for_its_kind(
    node: Node, trap: bool, shutdown: float, reason: str, journal_after: list[Any]
) -> None:
    # dynamic_supervisor_test.exs "terminates children with expired integer shutdown": children
    # that do not trap exits end with :shutdown, the one that traps exits with :killed.
    journal: list[Any] = []
    sup, ref, calls = await _busy_child(node, busy("child", journal, trap=trap, shutdown=shutdown))
    await sup.terminate_child(ref)
    assert ref.exit_reason == reason
    assert journal == journal_after
    for call in calls:
        with pytest.raises(ActorExited, match=reason):
            await call


async def test_a_trapping_child_handles_its_queued_messages_then_terminates(node: Node) -> None:
    # GenServer.terminate/2 docs (above): the parent's exit signal is handled in mailbox order.
    journal: list[Any] = []
    sup = await DynamicSupervisor.start(node)
    ref = await sup.start_child(busy("trapping", journal, trap=True))
    queued = [asyncio.ensure_future(ref.call(i, timeout=None)) for i in range(3)]
    await sup.terminate_child(ref)
    assert [await call for call in queued] == [0, 1, 2]
    assert journal == [0, 1, 2, ("terminate", "shutdown")]
    assert ref.exit_reason == "shutdown"


async def test_terminate_that_overruns_the_shutdown_timeout_is_killed(node: Node) -> None:
    # Supervisor docs: "If it doesn't terminate within the specified time, the child process is
    # unconditionally terminated by the supervisor via Process.exit(child, :kill)".
    journal: list[Any] = []
    sup = await DynamicSupervisor.start(node)
    spec = busy("slow", journal, trap=False, shutdown=0.05, slow_terminate=30.0)
    ref = await sup.start_child(spec)
    await sup.terminate_child(ref)
    assert ref.exit_reason == "killed"
    assert journal == [("terminate", "shutdown")]


async def test_brutal_kill_runs_no_terminate(node: Node) -> None:
    # dynamic_supervisor_test.exs "terminates child with brutal kill"; GenServer.terminate/2 docs:
    # ":brutal_kill: the GenServer is killed and so terminate/2 is not called".
    journal: list[Any] = []
    sup = await DynamicSupervisor.start(node)
    ref = await sup.start_child(busy("brutal", journal, trap=True, shutdown="brutal_kill"))
    await sup.terminate_child(ref)
    assert (ref.exit_reason, journal) == ("killed", [])


async def test_a_static_supervisor_stops_children_in_reverse_order_each_by_its_kind(
    node: Node,
) -> None:
    # Supervisor docs, "Start and shutdown": "When a supervisor shuts down, it terminates all
    # children in the opposite order they are listed".
    journal: list[Any] = []
    specs = [
        busy("first", journal, trap=True, named=True),
        busy("second", journal, trap=False, named=True),
        busy("third", journal, trap=True, named=True),
    ]
    sup = await Supervisor.start(node, specs)
    await node.stop(sup)
    assert journal == [
        ("terminate", "third", "shutdown"),
        ("terminate", "second", "shutdown"),
        ("terminate", "first", "shutdown"),
    ]


class Flaky(Actor):
    """Starts the first time only: every restart fails."""

    starts = 0

    async def init(self) -> None:
        Flaky.starts += 1
        if Flaky.starts > 1:
            raise RuntimeError("cannot start again")


async def test_a_child_whose_restart_keeps_failing_can_be_terminated_by_its_old_ref(
    node: Node,
) -> None:
    # dynamic_supervisor_test.exs "terminates restarting child": terminate_child(sup, old_pid)
    # returns :ok while the restart is being retried, and {:error, :not_found} the second time.
    Flaky.starts = 0
    sup = await DynamicSupervisor.start(node, max_restarts=1000, max_seconds=1.0)
    ref = await sup.start_child(ChildSpec(id="flaky", start=Flaky))
    node.exit(ref, "boom")
    await ref.wait()
    await asyncio.sleep(0.02)  # the restart fails and is retried
    assert Flaky.starts > 1
    assert await sup.count_children() == {"specs": 1, "active": 0, "supervisors": 0, "workers": 1}
    await sup.terminate_child(ref)
    assert await sup.count_children() == {"specs": 0, "active": 0, "supervisors": 0, "workers": 0}
    with pytest.raises(ChildNotFound):
        await sup.terminate_child(ref)
    starts = Flaky.starts
    await asyncio.sleep(0.02)
    assert Flaky.starts == starts  # the retries stopped
    assert sup.alive
