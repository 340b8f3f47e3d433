"""The response cache: what a hit costs beyond the call path, one call at a time.

    python benchmarks/bench_cache.py [--quick] [--calls N] [--rounds R]

Two contenders in one process, alternating round by round (``--rounds`` rounds of ``--calls``
sequential calls each, after a warm-up), both a native ``dspex.Predict("question -> answer")``
through the public API (routing, the module actor, the ChatAdapter's format and parse, the LM
client building and encoding the request):

- call path: the response cache off, and the LM client's request itself (the HTTP exchange and
  the reply's decoding) answered at once with a ready completion: everything a call does but
  talk to the LM;
- hit: the response cache on and holding the reply (a ScriptedLM in its own process answered
  the first call): every timed call is answered from the cache (its key computed from the
  request, the cache asked, the reply decoded), no request sent.

Figure: the hit's cost beyond the call path = median(hit) - median(call path) per call; target
<= 20 us. Reported beside it: a hit of plain DSPy's own cache (``dspy.LM(cache=True)``, memory
only, ``acall`` of ``dspy.Predict``), for scale, and the median time of each contender.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import INPUTS, REPLY, SIGNATURE, Row, ScriptedServer, dspex_runtime, quiet, report

import dspex
from dspex.lm._wire import Completion, Usage

TARGET_US = 20.0


async def per_call(module: Any, calls: int) -> float:
    """Seconds per call, ``calls`` sequential calls."""
    start = time.perf_counter()
    for _ in range(calls):
        await module.execute(INPUTS, implementation="native")
    return (time.perf_counter() - start) / calls


async def dspy_hit(url: str, calls: int, rounds: int) -> float:
    """Median seconds per call of plain DSPy answering from its own (memory) cache."""
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    lm = dspy.LM("openai/bench", api_base=url, api_key="bench", cache=True)
    predict = dspy.Predict(SIGNATURE)
    adapter = dspy.ChatAdapter()
    with dspy.context(lm=lm, adapter=adapter):
        await predict.acall(**INPUTS)  # cached now
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                await predict.acall(**INPUTS)
            samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


async def main(calls: int, rounds: int) -> bool:
    quiet()
    with ScriptedServer(REPLY) as server:
        async with (
            dspex_runtime(server.url) as instant_rt,
            dspex_runtime(server.url, cache={"memory_mb": 64}) as cached_rt,
        ):
            assert instant_rt.client is not None
            ready = Completion(texts=[REPLY], finish_reasons=["stop"], usage=Usage(), model="b")

            async def answered(*args: Any) -> tuple[Completion, bytes | None]:
                return ready, None

            instant_rt.client._request = answered  # type: ignore[method-assign]
            instant = await dspex.Predict.create(SIGNATURE, runtime=instant_rt)
            cached = await dspex.Predict.create(SIGNATURE, runtime=cached_rt)
            await per_call(instant, calls)  # warm-up; the cached one's first call fills it
            await per_call(cached, calls)
            path, hit = [], []
            for _ in range(rounds):
                path.append(await per_call(instant, calls))
                hit.append(await per_call(cached, calls))
            metrics = await cached_rt.metrics()
        assert metrics.cache is not None
        assert metrics.cache.misses == 1, metrics.cache
        reference = await dspy_hit(server.url, calls, rounds)
    path_us = statistics.median(path) * 1e6
    hit_us = statistics.median(hit) * 1e6
    beyond = hit_us - path_us
    rows = [
        Row(
            "cache hit beyond the call path",
            beyond,
            "us",
            target=f"<= {TARGET_US:g} us",
            ok=beyond <= TARGET_US,
        ),
        Row("native call, LM answering at once (call path)", path_us, "us"),
        Row("native call, cache hit", hit_us, "us"),
        Row("plain DSPy Predict.acall, its own cache hit", reference * 1e6, "us"),
    ]
    extra = {"calls": calls, "rounds": rounds, "hits": metrics.cache.hits}
    return report("bench_cache", rows, extra)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    calls, rounds = (300, 5) if args.quick else (args.calls, args.rounds)
    sys.exit(0 if asyncio.run(main(calls, rounds)) else 1)
