"""TaskSupervisor, as Elixir's Task.Supervisor (``lib/elixir/lib/task/supervisor.ex`` and
``lib/elixir/test/elixir/task/supervisor_test.exs``; each test names what it follows)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dspex.actors import NOREPLY, Actor, Caller, Down, Node, TaskRef
from dspex.errors import ActorExited, MaxChildren, NoProc
from dspex.supervision import ChildSpec, Supervisor, TaskSupervisor, TaskSupervisorRef


async def value(x: Any, delay: float = 0.0) -> Any:
    await asyncio.sleep(delay)
    return x


async def boom(delay: float = 0.0) -> None:
    await asyncio.sleep(delay)
    raise ValueError("task failed")


class Owner(Actor):
    """Starts tasks on the supervisor given to init and records the Downs it gets."""

    async def init(self, tasks: TaskSupervisorRef) -> None:
        self.tasks = tasks
        self.downs: asyncio.Queue[Down] = asyncio.Queue()

    async def handle_call(self, msg: Any, caller: Caller) -> Any:
        kind, *args = msg
        if kind == "start":
            fn, fn_args = args
            return self.tasks.async_nolink(fn, *fn_args)
        if kind == "await":
            (fn, fn_args) = args
            handle = self.tasks.async_nolink(fn, *fn_args)
            try:
                return ("ok", await handle)
            except ActorExited as exc:
                return ("exited", exc.reason)
        if kind == "down":

            async def next_down() -> None:
                caller.reply(await asyncio.wait_for(self.downs.get(), 5))

            self.start_task(next_down())
            return NOREPLY
        raise AssertionError(msg)

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Down):
            self.downs.put_nowait(msg)


async def _setup(node: Node, **options: Any) -> tuple[TaskSupervisorRef, Any]:
    tasks = await TaskSupervisor.start(node, **options)
    owner = await node.spawn(Owner, tasks)
    return tasks, owner


async def _next_down(owner: Any) -> Down:
    """The next Down the owner got (it arrives as info; a deferred call hands it over)."""
    down: Down = await owner.call(("down",), timeout=5)
    return down


async def test_the_owner_awaits_the_value(node: Node) -> None:
    # supervisor_test.exs "async/1": Task.await gets the task's value.
    _, owner = await _setup(node)
    assert await owner.call(("await", value, ("v",))) == ("ok", "v")


async def test_a_crash_is_a_down_to_the_owner_never_a_crash_of_the_owner(node: Node) -> None:
    # async_nolink docs: "The task won't be linked to the caller"; the caller "will always
    # receive a :DOWN message" with the reason.
    tasks, owner = await _setup(node)
    handle: TaskRef = await owner.call(("start", boom, ()))
    down = await _next_down(owner)
    assert down.actor is handle
    assert down.monitor == handle.id
    assert isinstance(down.reason, ValueError)
    assert owner.alive
    assert tasks.alive


async def test_awaiting_a_crashed_task_raises_in_the_owner_only(node: Node) -> None:
    _, owner = await _setup(node)
    verdict, reason = await owner.call(("await", boom, ()))
    assert verdict == "exited"
    assert isinstance(reason, ValueError)
    assert owner.alive


async def test_a_task_that_ends_normally_sends_a_normal_down(node: Node) -> None:
    # supervisor_test.exs "spawns a task under the supervisor without linking to the caller":
    # {ref, :done} then {:DOWN, ref, _, _, :normal} (dspex: the value rides on the handle).
    _, owner = await _setup(node)
    handle: TaskRef = await owner.call(("start", value, (42,)))
    down = await _next_down(owner)
    assert (down.actor, down.reason) == (handle, "normal")
    assert await handle == 42


async def test_max_children_bounds_the_tasks(node: Node) -> None:
    # supervisor_test.exs "raises when :max_children is reached".
    tasks = await TaskSupervisor.start(node, max_children=2)
    first = tasks.start_child(value, 1, 10.0)
    tasks.start_child(value, 2, 10.0)
    with pytest.raises(MaxChildren, match="max_children=2"):
        tasks.start_child(value, 3)
    first.cancel()
    await first.join()
    assert await tasks.start_child(value, 4) == 4  # room again


async def test_tasks_are_cancelled_when_their_owner_exits(node: Node) -> None:
    # dspex's choice (Elixir leaves such a task running; its reply goes nowhere): the work of an
    # owner that is gone is cancelled.
    tasks, owner = await _setup(node)
    handle: TaskRef = await owner.call(("start", value, ("late", 30.0)))
    node.exit(owner, "kill")
    assert await handle.join() == "killed"
    assert tasks.children() == []


async def test_stopping_the_supervisor_shuts_its_tasks_down_in_tree_order(node: Node) -> None:
    # supervisor_test.exs "with custom shutdown": the supervisor's stop ends its tasks; the
    # owner hears "shutdown". Supervisor docs: children stop in reverse start order.
    order: list[str] = []

    async def worker(tag: str) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            order.append(tag)

    sup = await Supervisor.start(
        node,
        [
            TaskSupervisor.child_spec("early", name="early"),
            TaskSupervisor.child_spec("late", name="late"),
        ],
    )
    early = node.whereis("early")
    late = node.whereis("late")
    assert isinstance(early, TaskSupervisorRef)
    assert isinstance(late, TaskSupervisorRef)
    owner = await node.spawn(Owner, early)
    handle = early.async_nolink(worker, "early", owner=owner)
    late.start_child(worker, "late")
    await asyncio.sleep(0)
    await node.stop(sup)
    assert order == ["late", "early"]
    down = await _next_down(owner)
    assert (down.actor, down.reason) == (handle, "shutdown")
    with pytest.raises(NoProc):
        early.start_child(value, 1)


async def test_report_abnormal_skips_normal_ends_and_the_owners_own_cancels(node: Node) -> None:
    tasks, owner = await _setup(node)
    quiet = tasks.async_nolink(value, 1, owner=owner, report="abnormal")
    cancelled = tasks.async_nolink(value, 2, 30.0, owner=owner, report="abnormal")
    cancelled.cancel()
    crashed = tasks.async_nolink(boom, 0.01, owner=owner, report="abnormal")
    down = await _next_down(owner)
    assert down.actor is crashed
    assert quiet.reason == "normal"
    assert cancelled.reason == "killed"


async def test_a_crash_of_a_fire_and_forget_task_is_logged(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    # start_child: nobody is told; the supervisor logs the crash and lives on.
    tasks = await TaskSupervisor.start(node)
    handle = tasks.start_child(boom)
    assert isinstance(await handle.join(), ValueError)
    await asyncio.sleep(0)
    assert "crashed" in caplog.text
    assert tasks.alive


async def test_the_supervisor_under_a_tree_is_a_child_spec() -> None:
    spec = TaskSupervisor.child_spec("tasks", max_children=3)
    assert isinstance(spec, ChildSpec)
    assert (spec.id, spec.args, spec.shutdown) == ("tasks", (3,), 5.0)
