"""LM client overhead: aiohttp vs httpx, dspex's LMClient, and DSPy's own LM layer.

A ScriptedLM runs as a separate process (so it does not compete with the client for this
process's CPU), answering instantly, and a second one answering after 50 ms. Every client sends
the same DSPy ChatAdapter request and decodes the reply. Measured per client:

- sequential: wall time and client CPU per request, one request at a time;
- concurrent: requests/s with ``--concurrency`` requests in flight against the instant server;
- latency-bound: requests/s with 200 in flight against the 50 ms server (the ideal is 4,000/s),
  which shows whether the connection pool really runs requests in parallel.

    python benchmarks/bench_lm_client.py [--quick] [--no-dspy]

Prints a table and writes benchmarks/results/bench_lm_client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import aiohttp
import httpx
import msgspec

from dspex.lm import LM, LMClient

sys.path.insert(0, str(Path(__file__).parent))
from _common import scripted_server, sequential

RESULTS = Path(__file__).parent / "results"
MODEL = "openai/bench"
REPLY = "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
MESSAGES = [
    {
        "role": "system",
        "content": (
            "Your input fields are:\n1. `question` (str):\nYour output fields are:\n"
            "1. `answer` (str):\nAll interactions will be structured in the following way, "
            "with the appropriate values filled in.\n\n[[ ## question ## ]]\n{question}\n\n"
            "[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]\nIn adhering to this "
            "structure, your objective is: \n        Given the fields `question`, produce the "
            "fields `answer`."
        ),
    },
    {
        "role": "user",
        "content": (
            "[[ ## question ## ]]\nWhat is 2 + 2?\n\nRespond with the corresponding output "
            "fields, starting with the field `[[ ## answer ## ]]`, and then ending with the "
            "marker for `[[ ## completed ## ]]`."
        ),
    },
]
BODY = msgspec.json.encode({"model": "bench", "messages": MESSAGES})
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
Call = Callable[[], Awaitable[object]]


async def concurrent(call: Call, requests: int, concurrency: int) -> float:
    """Requests per second with ``concurrency`` requests in flight."""
    per_worker = max(1, requests // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    await asyncio.gather(*(call() for _ in range(concurrency)))  # open the connections
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - start)


async def clients(stack: AsyncExitStack, base: str, dspy: bool) -> dict[str, Call]:
    """One zero-argument call per client, all sending the same request to ``base``."""
    url = f"{base}/chat/completions"
    connector = aiohttp.TCPConnector(limit=256)
    session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    client = await stack.enter_async_context(httpx.AsyncClient(limits=limits))
    lm_client = await stack.enter_async_context(LMClient(max_connections=256))
    lm = LM(MODEL, api_base=base, api_key="bench")

    async def raw_aiohttp() -> object:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            return msgspec.json.decode(await response.read())

    async def raw_httpx() -> object:
        response = await client.post(url, content=BODY, headers=HEADERS)
        return msgspec.json.decode(response.content)

    async def dspex_client() -> object:
        return await lm_client.complete(lm, MESSAGES)

    calls: dict[str, Call] = {
        "aiohttp (raw)": raw_aiohttp,
        "httpx (raw)": raw_httpx,
        "dspex LMClient": dspex_client,
    }
    if dspy:
        for engine in ("litellm", "auto"):
            dspy_lm = lm.to_dspy(engine=engine)
            stack.push_async_callback(dspy_lm.aclose)

            async def dspy_call(dspy_lm: Any = dspy_lm) -> object:
                return await dspy_lm.acall(messages=MESSAGES)

            calls[f"dspy.LM engine={engine}"] = dspy_call
    return calls


async def run(args: argparse.Namespace, instant: str, slow: str) -> dict[str, dict[str, float]]:
    """Measure every client against both servers, in interleaved rounds; keep each best."""
    results: dict[str, dict[str, float]] = {}
    async with AsyncExitStack() as stack:
        fast_calls = await clients(stack, instant, args.dspy)
        slow_calls = await clients(stack, slow, args.dspy)
        for round_ in range(args.rounds):
            for name, call in fast_calls.items():
                if name.startswith("dspy") and round_:
                    continue  # DSPy is slow and its numbers are far apart: one round is enough
                scale = 0.2 if name.startswith("dspy") else 1.0
                seq_wall, seq_cpu = await sequential(call, int(args.requests * scale))
                rps = await concurrent(call, int(2 * args.requests * scale), args.concurrency)
                bound = await concurrent(slow_calls[name], int(args.requests * scale), 200)
                row = results.setdefault(name, {})
                row["sequential_us"] = min(seq_wall, row.get("sequential_us", seq_wall))
                row["client_cpu_us"] = min(seq_cpu, row.get("client_cpu_us", seq_cpu))
                row["concurrent_rps"] = max(rps, row.get("concurrent_rps", rps))
                row["latency_bound_rps"] = max(bound, row.get("latency_bound_rps", bound))
                print(f"  round {round_ + 1}: measured {name}", file=sys.stderr)
    return results


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # dspy's messages= deprecation
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="best of this many rounds")
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    parser.add_argument("--no-dspy", dest="dspy", action="store_false")
    args = parser.parse_args()
    if args.quick:
        args.requests //= 4
    with scripted_server(REPLY) as instant_url, scripted_server(REPLY, 0.05) as slow_url:
        results = asyncio.run(run(args, instant_url, slow_url))
    base = results["aiohttp (raw)"]
    print(
        f"\n{'client':<24}{'seq µs':>9}{'CPU µs':>9}{'x aiohttp':>11}"
        f"{f'req/s @{args.concurrency}':>12}{'req/s @200, 50 ms':>19}"
    )
    for name, row in results.items():
        print(
            f"{name:<24}{row['sequential_us']:>9.0f}{row['client_cpu_us']:>9.0f}"
            f"{row['client_cpu_us'] / base['client_cpu_us']:>11.2f}"
            f"{row['concurrent_rps']:>12.0f}{row['latency_bound_rps']:>19.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": "bench_lm_client",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "versions": {"aiohttp": aiohttp.__version__, "httpx": httpx.__version__},
        "requests": args.requests,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "results": results,
    }
    (RESULTS / "bench_lm_client.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
