"""Memory: RSS per live module actor and per call in flight, beside baselines, in one run.

    python benchmarks/bench_memory.py [--quick]

Each figure is measured in a fresh process (RSS deltas are only meaningful there), best (least)
of ``--rounds`` interleaved runs:

- per module: 10,000 ``dspex.Predict`` modules through the public API (each a supervised actor
  with its native module built), RSS after - before, divided by 10,000; beside a bare dspex actor
  and a plain ``dspy.Predict`` object (no actor, nothing built until called) per instance.
  A warm-up of 100 instances comes first, so one-off caches are not counted.
- per call in flight: 5,000 concurrent native calls held in flight by a ScriptedLM answering after
  3 s, RSS with them in flight - RSS idle (after one call), divided by 5,000: each call's share
  of everything it holds, its pooled connection included; beside the raw aiohttp client doing
  the same. (A second wave would reuse the memory the first freed and show next to nothing.)

Target: <= 10 KB per module actor. The rest is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    INPUTS,
    MAX_CALLERS,
    SIGNATURE,
    Row,
    ScriptedServer,
    dspex_runtime,
    floor_call,
    quiet,
    report,
    request_body,
    rss_bytes,
    run_json,
)

INSTANCES = 10_000
WARMUP = 100
HOLD = 3.0  # seconds the LM holds each in-flight call


async def per_instance(kind: str, n: int) -> float:
    """RSS bytes per live instance of ``kind``, over ``n`` instances after a warm-up."""
    import dspex

    async with dspex_runtime(callers=256) as rt:
        if kind == "module":

            async def make() -> Any:
                return await dspex.Predict.create(SIGNATURE, runtime=rt)
        elif kind == "actor":

            class Idle(dspex.Actor):
                pass

            async def make() -> Any:
                return await rt.node.spawn(Idle)
        else:
            import dspy

            async def make() -> Any:
                return dspy.Predict(SIGNATURE)

        keep = [await make() for _ in range(WARMUP)]
        gc.collect()
        before = rss_bytes()
        keep += [await make() for _ in range(n)]
        gc.collect()
        after = rss_bytes()
        assert len(keep) == n + WARMUP
        if kind == "module":
            assert (await keep[-1].info()).in_flight == 0
    return (after - before) / n


async def in_flight(kind: str, url: str, n: int) -> float:
    """RSS bytes per call in flight with ``n`` calls held by the LM."""
    import aiohttp

    import dspex

    async def measure(call: Any, check: Any) -> float:
        await call()  # imports, first connection
        gc.collect()
        before = rss_bytes()
        tasks = [asyncio.create_task(call()) for _ in range(n)]
        await asyncio.sleep(HOLD / 2)
        await check()
        gc.collect()
        during = rss_bytes()
        await asyncio.gather(*tasks)
        return (during - before) / n

    if kind == "raw":
        connector = aiohttp.TCPConnector(limit=MAX_CALLERS, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            call = floor_call(session, url, request_body())

            async def no_check() -> None:
                return None

            return await measure(call, no_check)
    async with dspex_runtime(url) as rt:
        module = await dspex.Predict.create(SIGNATURE, runtime=rt)

        async def check() -> None:
            assert (await module.info()).in_flight == n

        return await measure(lambda: module(**INPUTS), check)


def worker(args: Any) -> None:
    quiet()
    if args.url:
        result = asyncio.run(in_flight(args.worker, args.url, args.n))
    else:
        result = asyncio.run(per_instance(args.worker, args.n))
    print(json.dumps({"bytes": result}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    rounds = 1 if args.quick else args.rounds
    best: dict[str, float] = {}
    with ScriptedServer(latency=HOLD) as server:
        for _ in range(rounds):
            for kind in ("module", "actor", "dspy"):
                out = run_json([__file__, "--worker", kind, "--n", str(INSTANCES)])
                best[kind] = min(out["bytes"], best.get(kind, out["bytes"]))
            for kind in ("native", "raw"):
                command = [__file__, "--worker", kind, "--n", str(MAX_CALLERS)]
                out = run_json([*command, "--url", server.url])
                best[f"{kind} in flight"] = min(out["bytes"], best.get(f"{kind} in flight", 1e18))
    kb = {name: value / 1024 for name, value in best.items()}
    rows = [
        Row(
            "RSS per module actor (10k Predict modules)",
            kb["module"],
            "KB",
            baseline=kb["actor"],
            baseline_name="bare dspex actor",
            target="<= 10 KB",
            ok=kb["module"] <= 10,
            note="see benchmarks/README.md (memory)",
        ),
        Row(
            "RSS per module actor vs a dspy.Predict object",
            kb["module"],
            "KB",
            baseline=kb["dspy"],
            baseline_name="dspy.Predict, no actor",
            target="reported",
        ),
        Row(
            "RSS per call in flight (5,000 native calls)",
            kb["native in flight"],
            "KB",
            baseline=kb["raw in flight"],
            baseline_name="raw aiohttp",
            target="reported",
        ),
    ]
    return 0 if report("bench_memory", rows, {"kb": kb}) else 1


if __name__ == "__main__":
    sys.exit(main())
