"""What routing and the actor hop add to a native call, beside a direct call, in one run.

    python benchmarks/bench_routing.py [--quick]

All on an instant in-process LM (no HTTP), one call at a time, no OpenTelemetry SDK:

- direct: a native Predict module called as a plain object;
- facade: the same module through ``await predict(question=...)``: ModuleRef -> actor mailbox
  -> routing snapshot read -> owned task -> backend -> outcome cast to the router -> reply.

Target: facade - direct <= 25 us. The facade beside DSPy and the floor: bench_native.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import INPUTS, SIGNATURE, InstantClient, Row, best_sequential, dspex_runtime, report

import dspex
from dspex.backends.native import NativePredict


async def measure(requests: int, rounds: int) -> dict[str, float]:
    client: Any = InstantClient()
    direct = NativePredict(SIGNATURE, lm=dspex.LM("openai/instant"), client=client)
    async with dspex_runtime(callers=256) as runtime:
        predict = await dspex.Predict.create(SIGNATURE, runtime=runtime)
        assert (await predict(**INPUTS)).implementation == "native"
        calls = {"direct": lambda: direct(INPUTS), "facade": lambda: predict(**INPUTS)}
        best = await best_sequential(calls, lambda _: requests, rounds)
    return {name: wall for name, (wall, _) in best.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
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
    ]
    return 0 if report("bench_routing", rows) else 1


if __name__ == "__main__":
    sys.exit(main())
