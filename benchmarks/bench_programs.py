"""A compiled DSPy program served by ``dspex.Module.wrap``, beside the same program in plain DSPy.

    python benchmarks/bench_programs.py [--quick]

The program is the issue's draft/refine: a ChainOfThought drafts, a Predict refines (two LM calls
per program call), compiled with ``dspy.BootstrapFewShot`` (on DSPy's DummyLM) so that both
predictors send demos. It comes in two versions carrying the same saved state: an ``aforward``
one (``await self.draft.acall(...)``) and a sync ``forward`` one, as users write it.

- Overhead beyond the LM, in process, one call at a time (best of interleaved rounds): the
  wrapped ``aforward`` program (each predictor a native module on an instant LM client) against
  plain ``program.acall`` on DummyLM; the wrapped sync program reported beside it.
- Throughput at 1,000 concurrent closed-loop callers against a ScriptedLM in its own process
  answering after 100 ms (so at best 1,000 / 0.2 s = 5,000 program calls/s), each contender in a
  fresh process, best of two interleaved rounds; after a warm-up of 1,000 completed calls, the
  time the next 2,000 take (1,000 with ``--quick``; see ``closed_loop``). The wrapped
  ``aforward`` program against plain DSPy ``acall`` + gather (DSPy's default engine, cache off);
  the wrapped sync-``forward`` program, whose ``forward`` runs in the dspy implementation's worker
  threads (the runtime's pool of ``SYNC_THREADS``), reported beside the bound that pool sets: at
  most SYNC_THREADS / 0.2 s program calls/s, however many callers.

Targets: overhead <= 0.1x of DSPy's ``acall``; throughput >= 5x of DSPy's ``acall`` + gather.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
#: the program the migration guide (docs/migrate.md) serves
sys.path.insert(0, str(Path(__file__).parent.parent / "examples" / "migrate_program"))
from _common import (
    INPUTS,
    Call,
    Row,
    best_sequential,
    contender_rounds,
    dspex_runtime,
    dspy_call,
    dspy_lm,
    dummy_lm,
    loop_arguments,
    quiet,
    report,
    settle_quick,
)
from bench_throughput import GCClock

import dspex

LATENCY = 0.1
LM_CALLS = 2  # per program call: draft, then refine
CALLERS = 1000
#: The dspy implementation's worker threads (``dspex/runtime.py``: the ThreadPoolExecutor the
#: runtime gives DSPyBackend): a sync ``forward`` holds one for its whole call.
SYNC_THREADS = 32
#: contender -> label, for the throughput runs.
CONTENDERS = {
    "native": "dspex wrap, aforward",
    "acall": "dspy acall + gather",
    "sync": "dspex wrap, sync forward",
}


def programs() -> tuple[Any, Any]:
    """The migration guide's draft/refine program, compiled, as a sync ``forward`` one (the
    guide's) and with an ``aforward``."""
    import dspy
    from program import DraftRefine

    class AsyncDraftRefine(DraftRefine):
        async def aforward(self, question: str) -> Any:
            draft = await self.draft.acall(question=question)
            return await self.refine.acall(question=question, draft=draft.answer)

    trainset = [
        dspy.Example(question=f"What is the capital of {country}?", answer="Paris")
        for country in ("France", "Italy", "Peru")
    ]
    trainset = [example.with_inputs("question") for example in trainset]
    optimizer = dspy.BootstrapFewShot(metric=lambda *_: True, max_bootstrapped_demos=2)
    with dspy.context(lm=dummy_lm(), adapter=dspy.ChatAdapter()):
        compiled = optimizer.compile(DraftRefine(), trainset=trainset)
    sync, aforward = DraftRefine(), AsyncDraftRefine()
    for program in (sync, aforward):
        program.load_state(compiled.dump_state())
        assert program.draft.predict.demos
        assert program.refine.demos
    return aforward, sync


# -- overhead, in process -----------------------------------------------------------------------


async def overhead(quick: bool) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) µs per program call: dspex native, dspex sync program, dspy acall."""
    aforward, sync = programs()
    async with dspex_runtime(callers=256) as rt:
        native = await dspex.Module.wrap(aforward, name="qa", runtime=rt)
        threaded = await dspex.Module.wrap(sync, name="qa_sync", runtime=rt)
        for ref in (native, threaded):
            assert (await ref(**INPUTS)).answer == "Paris"
        calls: dict[str, Call] = {
            "dspex native": lambda: native(**INPUTS),
            "dspex sync forward": lambda: threaded(**INPUTS),
            "dspy acall": dspy_call(aforward, dummy_lm()),
        }
        scale = 5 if quick else 1
        return await best_sequential(
            calls,
            lambda name: (300 if "dspy" in name else 1500) // scale,
            rounds=2 if quick else 4,
        )


# -- throughput, one process per contender ------------------------------------------------------


async def closed_loop(call: Call, callers: int, measured: int, cap: float) -> dict[str, float]:
    """``callers`` tasks calling ``call`` back to back: after a warm-up of ``callers``
    completions, the time the next ``measured`` take (each phase cut at ``cap`` seconds).

    Counting completions rather than a fixed window: callers that start together finish in
    waves (a CPU-bound client serves them round robin), and a window shorter than a wave can see
    none of them; from the end of one wave to the end of a later one is whole waves."""
    gc_clock, done, errors = GCClock(), 0, 0
    failure: list[BaseException] = []
    warm, finished = asyncio.Event(), asyncio.Event()

    async def caller() -> None:
        nonlocal done, errors
        while True:
            try:
                await call()
            except Exception as exc:  # counted; the run fails if every call does
                errors += 1
                failure[:] = [exc]
                await asyncio.sleep(0.01)
                continue
            done += 1
            if done == callers:
                warm.set()
            elif done == callers + measured:
                finished.set()

    await call()  # imports, first connection
    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    begin = time.perf_counter()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(warm.wait(), cap)
    if done == 0 and failure:
        raise failure[0]
    t0, cpu0, gc0, done0 = time.perf_counter(), time.process_time(), gc_clock.total, done
    old0 = len(gc_clock.old)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(finished.wait(), cap)
    elapsed, calls = time.perf_counter() - t0, done - done0
    return {
        "throughput": calls / elapsed,
        "calls": calls,
        "seconds": elapsed,
        "warmup_s": t0 - begin,
        "client_cpu_us": (time.process_time() - cpu0) / max(calls, 1) * 1e6,
        "gc_us": (gc_clock.total - gc0) / max(calls, 1) * 1e6,
        "gc_old_pauses": len(gc_clock.old) - old0,
        "gc_old_max_ms": max(gc_clock.old[old0:], default=0.0) * 1000,
        "errors": errors,
        "tasks": len(tasks),
    }


def finish(result: dict[str, float]) -> None:
    """Print a worker's result and exit at once: calls in flight, threads and the runtime die
    with the process (no drain)."""
    print(json.dumps(result), flush=True)
    os._exit(0)


async def contender(kind: str, url: str, args: Any) -> None:
    """One contender's measurement, in this (worker) process."""
    aforward, sync = programs()
    if kind == "acall":
        call = dspy_call(aforward, dspy_lm(url))
        finish(await closed_loop(call, args.callers, args.measured, args.cap))
    async with dspex_runtime(url) as rt:
        ref = await dspex.Module.wrap(aforward if kind == "native" else sync, runtime=rt)
        call = functools.partial(ref, **INPUTS)
        finish(await closed_loop(call, args.callers, args.measured, args.cap))


def rows(best: dict[str, tuple[float, float]], runs: dict[str, dict[str, float]]) -> list[Row]:
    native, acall = best["dspex native"][0], best["dspy acall"][0]
    native_run = runs["native"]
    at = f"@{native_run['tasks']} callers"
    bound = SYNC_THREADS / (LM_CALLS * LATENCY)
    return [
        Row(
            "draft/refine in process: native vs dspy acall",
            native,
            "us",
            baseline=acall,
            baseline_name="dspy acall, DummyLM",
            target="<= 0.1x",
            ok=native <= 0.1 * acall,
        ),
        Row(
            "draft/refine in process: sync forward vs acall",
            best["dspex sync forward"][0],
            "us",
            baseline=acall,
            baseline_name="dspy acall, DummyLM",
            target="reported",
        ),
        Row(
            f"draft/refine {at}: native vs dspy acall",
            runs["native"]["throughput"],
            "/s",
            baseline=runs["acall"]["throughput"],
            baseline_name="dspy acall + gather",
            target=">= 5x",
            ok=runs["native"]["throughput"] >= 5 * runs["acall"]["throughput"],
            note=(
                f"client CPU-bound on one core: {native_run['client_cpu_us']:.0f} us CPU per "
                f"program call ({native_run['gc_us']:.0f} in GC), {LM_CALLS} LM calls each; "
                f"ideal {native_run['tasks'] / (LM_CALLS * LATENCY):,.0f}/s"
            ),
        ),
        Row(
            f"draft/refine {at}: sync forward vs thread bound",
            runs["sync"]["throughput"],
            "/s",
            baseline=bound,
            baseline_name=f"{SYNC_THREADS} threads / 0.2 s",
            target="reported",
        ),
    ]


def main() -> int:
    args = loop_arguments(__doc__, CALLERS)
    if args.worker:
        quiet()
        asyncio.run(contender(args.worker, args.url, args))
    settle_quick(args, 15.0)
    quiet()
    best = asyncio.run(overhead(args.quick))
    runs = contender_rounds(__file__, CONTENDERS, args, LATENCY)
    per_call = {name: {"wall_us": wall, "cpu_us": cpu} for name, (wall, cpu) in best.items()}
    extra = {
        "latency_s": LATENCY,
        "callers": args.callers,
        "sync_threads": SYNC_THREADS,
        "per_call": per_call,
        "throughput": {CONTENDERS[kind]: result for kind, result in runs.items()},
    }
    return 0 if report("bench_programs", rows(best, runs), extra) else 1


if __name__ == "__main__":
    sys.exit(main())
