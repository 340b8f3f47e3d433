"""What routing and the actor hop add to a native call, beside a direct call, in one run.

    python benchmarks/bench_routing.py [--quick]

All on an instant in-process LM (no HTTP), one call at a time, no OpenTelemetry SDK:

- direct: a native Predict module called as a plain object;
- facade: the same module through ``await predict(question=...)``: ModuleRef -> actor mailbox
  -> routing snapshot read -> owned task -> backend -> outcome cast to the router -> reply;
- DSPy: ``dspy.Predict.acall`` on ``dspy.utils.DummyLM``.

Targets: facade - direct <= 25 us; facade <= 0.1x DSPy's acall.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy

sys.path.insert(0, str(Path(__file__).parent))
from _common import InstantClient, Row, report, sequential

import dspex
from dspex.backends.native import NativeBackend, NativePredict

REPLY = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
INPUTS = {"question": "What is the capital of France?"}


async def measure(requests: int, rounds: int) -> dict[str, float]:
    client: Any = InstantClient(REPLY)
    lm = dspex.LM("openai/instant")
    direct = NativePredict("question -> answer", lm=lm, client=client)
    dummy = dspy.utils.DummyLM([{"answer": "Paris"}] * (requests * rounds))
    reference = dspy.Predict("question -> answer")

    async def on_dspy() -> object:
        with dspy.context(lm=dummy, adapter=dspy.ChatAdapter()):
            return await reference.acall(**INPUTS)

    best: dict[str, float] = {}
    config = dspex.Config(implementation_preference="native_first")
    async with dspex.Runtime(lm=lm, config=config) as runtime:
        runtime.backends["native"] = NativeBackend(client)
        predict = await dspex.Predict.create("question -> answer")
        calls = {
            "direct": lambda: direct(INPUTS),
            "facade": lambda: predict(**INPUTS),
            "dspy acall": on_dspy,
        }
        for _ in range(rounds):
            for name, call in calls.items():
                n = requests // 10 if name.startswith("dspy") else requests
                wall, _ = await sequential(call, n)
                best[name] = min(wall, best.get(name, wall))
        assert (await predict(**INPUTS)).implementation == "native"
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    requests, rounds = (2000, 2) if args.quick else (10000, 3)
    best = asyncio.run(measure(requests, rounds))
    added = best["facade"] - best["direct"]
    rows = [
        Row(
            "routing + actor hop per call",
            added,
            "us",
            baseline=best["direct"],
            baseline_name="direct native call",
            target="<= 25 us",
            ok=added <= 25,
        ),
        Row(
            "native call through the facade",
            best["facade"],
            "us",
            baseline=best["dspy acall"],
            baseline_name="dspy Predict.acall",
            target="<= 0.1x dspy",
            ok=best["facade"] <= 0.1 * best["dspy acall"],
        ),
    ]
    return 0 if report("bench_routing", rows) else 1


if __name__ == "__main__":
    sys.exit(main())
