"""Native ReAct and Parallel beside DSPy 3.4.1, on the same instant LM, in one run.

    python benchmarks/bench_native_composites.py [--quick]

Framework overhead with an instant LM in process (no HTTP), one call at a time, best of
interleaved rounds: native modules on a client that answers at once, DSPy's modules on
``dspy.utils.DummyLM`` with the ChatAdapter.

- ReAct, 3 steps (3 tool calls, then the extraction: 4 LM calls): native ``NativeReAct`` vs
  ``dspy.ReAct.acall``, with an async tool (the target row) and with a sync tool (native runs it
  in a worker thread, DSPy on the event loop).
- Parallel, a batch of 8 through Predict with 8 workers: native ``NativeParallel`` (tasks on the
  loop) vs ``dspy.Parallel`` (a thread pool, which dspex's dspy backend runs in a worker thread);
  per item.

Target: native overhead at most 1/10 of DSPy's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy

sys.path.insert(0, str(Path(__file__).parent))
from _common import InstantClient, Row, report, sequential

from dspex.backends.native import NativeParallel, NativePredict, NativeReAct
from dspex.lm import LM

Call = Callable[[], Awaitable[object]]

INPUTS = {"question": "What is the capital of France?"}
BATCH = 8
#: One reply for every request: a ReAct step (always the lookup tool) and the extraction.
ANSWERS = {
    "next_thought": "Look it up.",
    "next_tool_name": "lookup",
    "next_tool_args": {"city": "Paris"},
    "reasoning": "Paris is the capital.",
    "answer": "Paris",
}
SECTIONS = [
    f"[[ ## {k} ## ]]\n{v if isinstance(v, str) else json.dumps(v)}" for k, v in ANSWERS.items()
]
REPLY = "\n\n".join([*SECTIONS, "[[ ## completed ## ]]"])


async def lookup(city: str) -> str:
    """Look up facts about a city."""
    return f"{city} is the capital of France."


def lookup_sync(city: str) -> str:
    """Look up facts about a city."""
    return f"{city} is the capital of France."


def calls() -> dict[str, Call]:
    lm = LM("openai/instant")
    client: Any = InstantClient(REPLY)
    native_react = NativeReAct("question -> answer", [lookup], lm=lm, client=client, max_iters=3)
    sync_tool = dspy.Tool(lookup_sync, name="lookup")
    native_react_sync = NativeReAct(
        "question -> answer", [sync_tool], lm=lm, client=client, max_iters=3
    )
    native_parallel = NativeParallel(
        NativePredict("question -> answer", lm=lm, client=client), BATCH
    )
    batch = {"batch": [INPUTS] * BATCH}

    dummy = dspy.utils.DummyLM([ANSWERS] * 10_000_000)
    adapter = dspy.ChatAdapter()
    dspy_react = dspy.ReAct("question -> answer", tools=[lookup], max_iters=3)
    dspy_react_sync = dspy.ReAct("question -> answer", tools=[sync_tool], max_iters=3)
    dspy_predict = dspy.Predict("question -> answer")
    dspy_parallel = dspy.Parallel(num_threads=BATCH, disable_progress_bar=True)
    pairs = [(dspy_predict, dict(INPUTS)) for _ in range(BATCH)]

    def on_dspy(module: Any) -> Call:
        async def call() -> object:
            with dspy.context(lm=dummy, adapter=adapter):
                return await module.acall(**INPUTS)

        return call

    async def dspy_batch() -> object:
        with dspy.context(lm=dummy, adapter=adapter):
            return await asyncio.to_thread(dspy_parallel, pairs)

    return {
        "native ReAct": lambda: native_react.run(dict(INPUTS)),
        "dspy ReAct.acall": on_dspy(dspy_react),
        "native ReAct, sync tool": lambda: native_react_sync.run(dict(INPUTS)),
        "dspy ReAct.acall, sync tool": on_dspy(dspy_react_sync),
        "native Parallel": lambda: native_parallel.run(batch),
        "dspy Parallel": dspy_batch,
    }


async def measure(requests: int, rounds: int) -> dict[str, float]:
    """Best wall microseconds per call of each, over interleaved rounds."""
    named = calls()
    for name, call in named.items():  # check that every call does what it says
        result: Any = await call()
        if "Parallel" in name:
            items = result["results"] if "native" in name else result
            answers = [r.answer for r in items]
        else:
            answers = [result.answer] if len(result.trajectory) == 12 else []  # 3 steps
        if answers != ["Paris"] * (BATCH if "Parallel" in name else 1):
            raise SystemExit(f"{name} did not run as expected: {result!r}")
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, call in named.items():
            wall, _ = await sequential(call, requests // 10 if "dspy" in name else requests)
            best[name] = min(wall, best.get(name, wall))
    return best


def rows(best: dict[str, float]) -> list[Row]:
    out = []
    for name, native, reference, unit, target in (
        ("ReAct (3 steps) overhead, instant LM", "native ReAct", "dspy ReAct.acall", 1, True),
        (
            "ReAct (3 steps), sync tool",
            "native ReAct, sync tool",
            "dspy ReAct.acall, sync tool",
            1,
            False,
        ),
        ("Parallel overhead per item, instant LM", "native Parallel", "dspy Parallel", BATCH, True),
    ):
        value, baseline = best[native] / unit, best[reference] / unit
        out.append(
            Row(
                name,
                value,
                "us",
                baseline=baseline,
                baseline_name=reference,
                target="<= 0.1x dspy" if target else "reported",
                ok=value <= 0.1 * baseline if target else None,
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("dspy").setLevel(logging.ERROR)
    requests, rounds = (200, 2) if args.quick else (1000, 3)
    best = asyncio.run(measure(requests, rounds))
    return 0 if report("bench_native_composites", rows(best)) else 1


if __name__ == "__main__":
    sys.exit(main())
