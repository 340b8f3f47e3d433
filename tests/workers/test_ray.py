"""The dspy workers as Ray actors, on a real local Ray (2 CPUs) running real DSPy against a
real HTTP LM: calls served and traced, and a worker killed with ``ray.kill`` mid-call handled
by dspex's rules (the call retried once elsewhere, the worker replaced)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import Config
from dspex.runtime import Runtime
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond

from .support import lm_of, until, workers

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # ray.init in the main thread replaces the SIGTERM handler with its own (sys.exit), and
    # ray.shutdown leaves it: put back what was there, or later tests' SIGTERM exits
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()
    signal.signal(signal.SIGTERM, sigterm)


async def test_calls_are_served_by_ray_actors(
    local_ray: None, server: ScriptedLM, spans: InMemorySpanExporter
) -> None:
    # num=None: one worker per CPU of the cluster (2)
    config = Config(dspy_workers=dspex.RayWorkers(), preload_dspy=True)
    async with Runtime(lm=lm_of(server), config=config) as rt:
        slots = workers(rt)
        assert len(slots) == 2
        assert all(slot.accepting for slot in slots)
        pids = {slot.pid for slot in slots}
        assert len(pids) == 2
        assert os.getpid() not in pids
        qa = await dspex.ChainOfThought.create("question -> answer", implementation="dspy")
        preds = await asyncio.gather(*(qa(question=f"q{i}") for i in range(20)))
        assert {(p.answer, p.implementation) for p in preds} == {("Paris", "dspy")}
        assert preds[0].usage["total_tokens"] > 0
        assert len(server.requests) == 20
        in_workers = [s for s in spans.get_finished_spans() if s.name == "dspex.dspy.worker"]
        assert len(in_workers) == 20
        assert {s.attributes["dspex.worker.pid"] for s in in_workers if s.attributes} <= pids
        # a stream on a Ray worker: the same events as native's, its Prediction last
        on_ray = [e async for e in qa.stream({"question": "q"})]
        native = [e async for e in qa.stream({"question": "q"}, implementation="native")]
        assert on_ray[-1].implementation == "dspy"
        assert on_ray[-1].to_dict() == native[-1].to_dict()
        assert on_ray[:-1] == native[:-1]
        assert any(isinstance(e, dspex.StreamChunk) and e.is_last for e in on_ray)


async def test_ray_workers_share_the_service_s_response_cache(
    local_ray: None, server: ScriptedLM
) -> None:
    """A reply a Ray worker got answers native, and the other way round: one cache, as with
    forked workers (with Config() defaults but for the workers)."""
    config = Config(dspy_workers=dspex.RayWorkers(num=1), preload_dspy=True)
    async with Runtime(lm=lm_of(server), config=config) as rt:
        qa = await dspex.Predict.create("question -> answer")
        on_ray = await qa.execute({"question": "q"}, implementation="dspy")
        native = await qa.execute({"question": "q"}, implementation="native")
        first = await qa.execute({"question": "q2"}, implementation="native")
        then_ray = await qa.execute({"question": "q2"}, implementation="dspy")
        metrics = await rt.metrics()
    assert len(server.requests) == 2
    assert on_ray.answer == native.answer == first.answer == then_ray.answer == "Paris"
    assert (on_ray.implementation, then_ray.implementation) == ("dspy", "dspy")
    assert native.usage["total_tokens"] == then_ray.usage["total_tokens"] == 0  # hits
    assert metrics.cache is not None
    assert (metrics.cache.hits, metrics.cache.misses) == (2, 2)


async def test_an_actor_killed_mid_call_is_replaced_and_its_call_retried(
    local_ray: None, server: ScriptedLM
) -> None:
    started = asyncio.Event()

    async def slow(request: RecordedRequest) -> Reply:
        started.set()
        await asyncio.sleep(1.0)
        return respond(answer="Paris")(request)

    server.script = slow
    config = Config(dspy_workers=dspex.RayWorkers(num=2), preload_dspy=True)
    async with Runtime(lm=lm_of(server), config=config) as rt:
        qa = await dspex.Predict.create("question -> answer", implementation="dspy")
        call = asyncio.ensure_future(qa(question="q"))
        await started.wait()
        (busy,) = [slot for slot in workers(rt) if slot.in_flight]
        killed_pid, link = busy.pid, busy.link
        assert link is not None
        ray.kill(link.actor, no_restart=True)  # type: ignore[attr-defined]
        pred = await asyncio.wait_for(call, 60)  # retried on the other actor
        assert pred.answer == "Paris"
        # the killed actor's slot takes calls again, on a new actor
        await until(lambda: busy.accepting and busy.pid != killed_pid)
        assert (await qa(question="again")).answer == "Paris"


async def test_messages_are_handled_in_the_order_sent_whatever_order_ray_starts_them(
    local_ray: None, server: ScriptedLM
) -> None:
    # Ray may start an async actor's calls out of order (a Build's large spec resolves later
    # than a small Run): here the Run is delivered first, and still runs after its Build.
    import cloudpickle

    from dspex.backends._spec import CallOptions, ModuleSpec
    from dspex.signature import Signature
    from dspex.workers._frames import Build, Done, Ready, Run, encode, from_worker
    from dspex.workers._ray import start_ray_worker

    link = await start_ray_worker(dspex.RayWorkers(num=1))
    try:
        assert isinstance(await link.receive(), Ready)
        spec = ModuleSpec(
            module_type="Predict",
            signature=Signature.parse("question -> answer"),
            lm=lm_of(server),
        )
        inputs = cloudpickle.dumps({"question": "q"})
        # no cache here (a runtime's worker backend asks its own): no Lookup to answer
        options = CallOptions(cache=False)
        run = link.actor.handle.remote(1, encode(Run(1, 7, inputs, options)))
        await asyncio.sleep(0.5)  # the Run has reached the actor, alone
        build = link.actor.handle.remote(0, encode(Build(7, cloudpickle.dumps(spec))))
        assert await build == b""
        answer = from_worker.decode(await asyncio.wait_for(run, 60))
        assert isinstance(answer, Done), answer
        assert cloudpickle.loads(answer.result).answer == "Paris"
    finally:
        await link.close(5.0)
