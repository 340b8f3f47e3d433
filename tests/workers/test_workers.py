"""The dspy implementation in worker processes, tested on real processes running real DSPy
against a real HTTP LM (ScriptedLM): calls served, DSPy kept out of the service, deaths,
deadlines, recycling, orphans and what cannot be sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import dspy
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import Config
from dspex.errors import ConfigError, LMError, Timeout, Unavailable
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM, Status, respond
from dspex.workers._worker import WorkerTraceback

from .support import lm_of, until, workers

ROOT = Path(__file__).resolve().parents[2]


async def test_calls_run_in_worker_processes(
    server: ScriptedLM, spans: InMemorySpanExporter
) -> None:
    async with Runtime(lm=lm_of(server), config=Config()) as rt:  # the default: one per core
        qa = await dspex.Predict.create("question -> answer", implementation="dspy")
        preds = await asyncio.gather(*(qa(question=f"q{i}") for i in range(10)))
        assert {p.answer for p in preds} == {"Paris"}
        assert {p.implementation for p in preds} == {"dspy"}
        assert preds[0].usage["total_tokens"] > 0  # token usage comes back with the call
        pids = {slot.pid for slot in workers(rt)}
        assert len(pids) == len(os.sched_getaffinity(0))
        assert os.getpid() not in pids
        # each call's time in its worker is a span under the call's execute span
        finished = spans.get_finished_spans()
        executes = {s.context.span_id: s for s in finished if s.name == "dspex.module.execute"}
        in_workers = [s for s in finished if s.name == "dspex.dspy.worker"]
        assert len(in_workers) == 10
        for span in in_workers:
            assert span.parent is not None
            assert span.parent.span_id in executes
            assert span.attributes is not None
            assert span.attributes["dspex.worker.pid"] in pids
        # the worker's own part, recorded there under the context propagated to it, is a
        # child of that span, in the same trace, down from the call's route span
        by_id = {s.context.span_id: s for s in finished}
        calls = [s for s in finished if s.name == "dspex.dspy.call"]
        assert len(calls) == 10
        for span in calls:
            assert span.parent is not None
            parent = by_id[span.parent.span_id]
            assert parent.name == "dspex.dspy.worker"
            assert span.context.trace_id == parent.context.trace_id
            assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time
            assert span.attributes is not None
            assert parent.attributes is not None
            assert span.attributes["dspex.worker.pid"] == parent.attributes["dspex.worker.pid"]
            ancestors = []
            while span.parent is not None and span.parent.span_id in by_id:
                span = by_id[span.parent.span_id]
                ancestors.append(span.name)
            assert ancestors[:3] == ["dspex.dspy.worker", "dspex.module.execute", "dspex.route"]
        # the LM error of a call, raised in a worker, reaches the caller as itself
        server.script = Status(500)
        with pytest.raises(LMError) as info:
            await qa(question="q")
        assert info.value.status == 500
        # what it was raised from stays in the worker; its traceback there is the cause
        assert isinstance(info.value.__cause__, WorkerTraceback)
        assert "dspy.utils.exceptions.LMServerError" in str(info.value.__cause__)


async def test_exploring_stays_on_native_until_the_workers_take_calls(server: ScriptedLM) -> None:
    async with Runtime(lm=lm_of(server), config=Config(adaptive={"explore_rate": 1.0})) as rt:
        qa = await dspex.Predict.create("question -> answer")
        # every call explores dspy; none waits for the workers, which the first one starts
        assert (await qa(question="q")).implementation == "native"
        await until(lambda: any(slot.accepting for slot in workers(rt)))
        assert (await qa(question="q")).implementation == "dspy"


def test_the_service_process_never_imports_dspy(tmp_path: Path) -> None:
    """In a fresh interpreter: after dspy calls (and a native call exploring nothing), the
    service's own process has imported neither dspy nor litellm."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        import dspex
        from dspex.testing import ScriptedLM, respond

        async def main():
            async with ScriptedLM(respond(answer="Paris")) as server:
                lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="k")
                async with dspex.Runtime(lm=lm):  # the defaults: workers, exploring dspy
                    qa = await dspex.ChainOfThought.create(
                        "question -> answer", implementation="dspy"
                    )
                    pred = await qa(question="q")
                    native = await dspex.Predict.create("question -> answer")
                    await asyncio.gather(*(native(question="q") for _ in range(50)))
            print(json.dumps({
                "answer": pred.answer,
                "dspy": "dspy" in sys.modules,
                "litellm": "litellm" in sys.modules,
            }))

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {
        "answer": "Paris",
        "dspy": False,
        "litellm": False,
    }


async def test_a_worker_killed_mid_call_is_replaced_and_the_call_retried(
    server: ScriptedLM,
) -> None:
    server.script = respond(answer="Paris", latency=1.0)
    async with Runtime(lm=lm_of(server), config=Config(dspy_workers=2)) as rt:
        qa = await dspex.Predict.create("question -> answer", implementation="dspy")
        await until(lambda: all(s.accepting for s in workers(rt)))
        call = asyncio.ensure_future(qa(question="q"))
        await until(lambda: any(s.in_flight for s in workers(rt)))
        (busy,) = [s for s in workers(rt) if s.in_flight]
        killed = busy.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        pred = await call  # retried once on the other worker
        assert pred.answer == "Paris"
        await until(lambda: busy.accepting and busy.pid != killed)  # restarted
        assert (await qa(question="q")).answer == "Paris"


async def test_a_worker_that_keeps_dying_is_given_up_and_calls_say_so(
    server: ScriptedLM,
) -> None:
    config = Config(dspy_workers=1, max_restarts=1, max_seconds=120)
    async with Runtime(lm=lm_of(server), config=config) as rt:
        qa = await dspex.Predict.create("question -> answer", implementation="dspy")
        assert (await qa(question="q")).answer == "Paris"
        (slot,) = workers(rt)
        for _ in range(2):  # the budget is one restart: the second death is one too many
            await until(lambda: slot.accepting)
            pid = slot.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await until(lambda pid=pid: slot.pid != pid or slot.gone)
        await until(lambda: slot.gone)
        with pytest.raises(Unavailable, match="every dspy worker process stopped"):
            await qa(question="q")
        native = await dspex.Predict.create("question -> answer")  # the rest serves on
        assert (await native(question="q")).answer == "Paris"


async def test_a_call_past_its_deadline_is_cancelled_in_its_worker(server: ScriptedLM) -> None:
    server.script = respond(answer="Paris", latency=5.0)
    async with Runtime(lm=lm_of(server), config=Config(dspy_workers=1)) as rt:
        qa = await dspex.Predict.create("question -> answer", implementation="dspy")
        await qa.execute({"question": "warm"}, timeout=30)
        (slot,) = workers(rt)
        pid = slot.pid
        started = time.monotonic()
        with pytest.raises(Timeout):
            await qa.execute({"question": "q"}, timeout=0.5)
        assert time.monotonic() - started < 2
        await asyncio.sleep(3)  # past the grace period: the worker stopped the call in time
        assert (slot.pid, slot.in_flight, slot.accepting) == (pid, 0, True)


async def test_a_worker_that_does_not_stop_a_cancelled_call_is_replaced(
    server: ScriptedLM,
) -> None:
    config = Config(dspy_workers=1, workers={"grace": 0.5})
    async with Runtime(lm=lm_of(server), config=config) as rt:
        ref = await dspex.Module.wrap(
            "tests.workers.programs:Sleeper", implementation="dspy", name="sleeper"
        )
        assert (await ref.execute({"question": "q"}, timeout=60)).answer == "Paris"
        (slot,) = workers(rt)
        pid = slot.pid
        with pytest.raises(Timeout):
            await ref.execute(
                {"question": "sleep"}, timeout=0.5
            )  # its thread sleeps on: no cancel stops it
        await until(lambda: slot.pid != pid and slot.accepting)
        assert (await ref.execute({"question": "q"}, timeout=60)).answer == "Paris"


async def test_workers_are_recycled_without_failing_a_call(server: ScriptedLM) -> None:
    config = Config(dspy_workers=1, workers={"max_requests": 3})
    async with Runtime(lm=lm_of(server), config=config) as rt:
        qa = await dspex.Predict.create("question -> answer", implementation="dspy")
        pids = set()
        for i in range(4):
            preds = await asyncio.gather(*(qa(question=f"q{i}{j}") for j in range(3)))
            assert [p.answer for p in preds] == ["Paris"] * 3
            pids.add(workers(rt)[0].pid)
            await until(lambda: workers(rt)[0].accepting)
        assert len(pids) >= 3  # a fresh process every 3 calls


def test_workers_die_with_the_service(tmp_path: Path) -> None:
    """The service is killed with SIGKILL: its workers and their zygote exit too, no orphan
    is left."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        import dspex
        from dspex.testing import ScriptedLM, respond

        async def main():
            async with ScriptedLM(respond(answer="Paris")) as server:
                lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="k")
                config = dspex.Config(dspy_workers=2, preload_dspy=True)
                async with dspex.Runtime(lm=lm, config=config) as rt:
                    slots = rt.backends["dspy"].slots
                    while not all(s.accepting for s in slots):
                        await asyncio.sleep(0.05)
                    from dspex.workers._zygote import zygote_pid
                    pids = [zygote_pid(), *(s.pid for s in slots)]
                    print(" ".join(str(pid) for pid in pids), flush=True)
                    await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    service = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert service.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(service.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(180)
        pids = [int(p) for p in line[0].split()]
        assert len(pids) == 3
        os.kill(service.pid, signal.SIGKILL)
        service.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, f"orphaned workers: {pids}"
            time.sleep(0.1)
    finally:
        service.kill()
        service.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


async def test_a_program_that_cannot_be_pickled_asks_for_a_factory(server: ScriptedLM) -> None:
    class Locked(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()
            self.ask = dspy.Predict("question -> answer")

        def forward(self, question: str) -> Any:
            return self.ask(question=question)

    async with Runtime(lm=lm_of(server), config=Config(dspy_workers=1)):
        with pytest.raises(ConfigError, match=r"pass a factory the workers can import"):
            await dspex.Module.wrap(Locked(), implementation="dspy")


async def test_a_program_travels_by_value_or_by_factory_path(server: ScriptedLM) -> None:
    from tests.modules.corpus import DraftRefine

    server.script = respond(answer="Paris", reasoning="It is the capital.")
    async with Runtime(lm=lm_of(server), config=Config(dspy_workers=1)):
        by_path = await dspex.Module.wrap(
            "tests.modules.corpus:DraftRefine", implementation="dspy", name="b"
        )
        second = await by_path(question="Capital?")
        compiled = DraftRefine()  # with its state: a demo travels with it
        compiled.refine.demos = [dspy.Example(question="Capital of Chad?", answer="N'Djamena")]
        by_value = await dspex.Module.wrap(compiled, implementation="dspy", name="a")
        assert (await by_value.info()).demos == 1
        # its own requests (its draft is the first program's: the response cache would answer)
        first = await by_value.execute({"question": "Capital?"}, cache=False)
    assert first.to_dict() == second.to_dict() == {"answer": "Paris"}
    # the same requests as plain DSPy sends (test_programs checks those in process)
    sent = [str(r.messages) for r in server.requests]
    assert len(sent) == 4
    assert "N'Djamena" not in sent[1]
    assert "N'Djamena" in sent[3]
    with dspy.context(lm=lm_of(server).to_dspy(), adapter=dspy.ChatAdapter()):
        await asyncio.to_thread(compiled, question="Capital?")
    assert [r.content for r in server.requests[2:4]] == [r.content for r in server.requests[4:]]


def test_a_worker_whose_answer_meets_a_closed_socket_exits_quietly(tmp_path: Path) -> None:
    """The service closes its end while a call runs (a shutdown racing the answer): the worker
    exits at once with code 0, as at end of file, and writes no traceback to the logs."""
    script = textwrap.dedent(
        """
        import asyncio, socket
        import cloudpickle
        from dspex.backends._spec import CallOptions, ModuleSpec
        from dspex.lm import LM
        from dspex.signature import Signature
        from dspex.testing import ScriptedLM, respond
        from dspex.workers._frames import Build, Ready, Run
        from dspex.workers._zygote import start_worker

        async def main():
            async with ScriptedLM(respond(answer="Paris", latency=0.5)) as server:
                link = await start_worker()
                assert isinstance(await link.receive(), Ready)
                lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
                spec = ModuleSpec(
                    module_type="Predict", signature=Signature.parse("q -> a"), lm=lm
                )
                link.send(Build(1, cloudpickle.dumps(spec)))
                link.send(Run(1, 1, cloudpickle.dumps({"q": "x"}), CallOptions(cache=False)))
                await server.wait_for_requests(1)  # the call runs in the worker
                # the worker can no longer write to us, but reads no end of file either
                link._sock.shutdown(socket.SHUT_RD)
                print("exit", await asyncio.wait_for(link.wait(), 30))

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "exit 0"
    assert "Traceback" not in out.stderr, out.stderr


def test_a_worker_reads_a_reset_connection_as_the_end_of_its_frames() -> None:
    """The service may close its end with frames of the worker's still unread (a drain's
    end, a kill): the worker's read then fails with ECONNRESET, which must end it as an end
    of file does, not print a traceback into the service's logs."""
    import socket

    from dspex.workers._main import read_frames

    service, worker = socket.socketpair()
    with worker:
        worker.sendall(b"frames the service never read")
        service.close()
        delivered: list[object] = []
        read_frames(worker.fileno(), delivered.append)  # returns; raises nothing
    assert delivered == [None]
