"""The Runtime: the node it holds while it runs, its root supervisor, its lifecycle; state and
accepting say the truth when the runtime's own tree fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import dspex
from dspex.actors import Node
from dspex.errors import ActorError, ActorExited
from dspex.runtime import MODULES, ROUTER, Runtime
from dspex.testing import ScriptedLM, respond
from tests.actors.helpers import Recorder, Terminating
from tests.supervision.helpers import worker


async def test_a_runtime_holds_a_fresh_node_while_it_runs() -> None:
    runtime = Runtime()
    with pytest.raises(ActorError, match="not running"):
        runtime.node  # noqa: B018
    assert runtime.whereis(ROUTER) is None
    async with runtime:
        first = runtime.node
        assert isinstance(first, Node)
        assert not isinstance(runtime, Node)  # it holds a node, it is not one
        assert runtime.whereis(ROUTER) is first.whereis(ROUTER) is not None
        assert first.whereis(MODULES) is runtime.modules
        assert runtime.loop is first.loop is asyncio.get_running_loop()
        assert repr(runtime).startswith("<Runtime running, ")
    assert first.processes() == []  # every actor of the run stopped with it
    assert runtime.whereis(ROUTER) is None
    assert repr(runtime) == "<Runtime stopped>"
    async with runtime:
        assert runtime.node is not first


async def test_runtime_root_supervises_children(runtime: Runtime) -> None:
    journal: list[Any] = []
    ref = await runtime.start_child(worker("under-root", journal))
    assert [c.id for c in await runtime.root.which_children()][-1] == "under-root"
    assert await ref.call("count") == 1


async def test_a_runtime_whose_root_supervisor_gave_up_says_so() -> None:
    async with ScriptedLM(respond(answer="Paris")) as server:
        lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="local")
        async with Runtime(lm=lm, config=dspex.Config()) as rt:
            predict = await dspex.Predict.create("question -> answer")
            assert (rt.state, rt.accepting) == ("running", True)
            for _ in range(4):  # the root allows 3 restarts in 5 s; the 4th crash ends its tree
                router = await rt.wait_for_name(ROUTER, timeout=5)  # restarted
                rt.node.exit(router, "kill")
                await router.wait()
                assert rt.state in ("running", "failed")
            assert await rt.root.wait() == "shutdown"
            assert (rt.state, rt.accepting) == ("failed", False)
            refused = "the runtime failed: its root supervisor gave up after repeated crashes"
            with pytest.raises(dspex.Unavailable, match=f"{refused}.*Predict takes no new calls"):
                await predict(question="q")
            with pytest.raises(dspex.Unavailable, match=f"{refused}.*it starts no new modules"):
                await dspex.Predict.create("question -> answer")
        assert (rt.state, rt.accepting) == ("stopped", False)


async def test_runtime_shutdown_stops_everything_and_leaves_no_tasks() -> None:
    before = asyncio.all_tasks()
    reasons: asyncio.Queue[object] = asyncio.Queue()
    async with Runtime() as runtime:
        refs = [await runtime.node.spawn(Terminating, reasons) for _ in range(5)]
        stuck = await runtime.node.spawn(Recorder)
        pending = asyncio.ensure_future(stuck.call("stuck", timeout=None))
        await asyncio.sleep(0)
        runtime.shutdown_timeout = 0.05
    assert all(not r.alive for r in refs)
    assert not stuck.alive
    with pytest.raises(ActorExited):
        await pending
    assert [reasons.get_nowait() for _ in range(5)] == ["shutdown"] * 5
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before


async def test_runtime_current_is_set_inside_the_context() -> None:
    async with Runtime() as runtime:
        assert Runtime.current() is runtime
    with pytest.raises(Exception, match="no dspex Runtime"):
        Runtime.current()
