"""Which server should ScriptedLM be? The hand-written asyncio one vs an aiohttp.web equivalent.

Each server runs in its own process and answers the same chat.completion instantly. One aiohttp
client (keep-alive) in this process measures sequential latency and throughput at a given
concurrency; the server's own CPU time per request (from /proc) is the cost that matters when a
benchmark shares the machine with it.

    python benchmarks/bench_scripted_lm.py [--quick] [--requests N] [--concurrency N] [--rounds N]

Prints a table and writes benchmarks/results/bench_scripted_lm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import process_cpu_seconds

RESULTS = Path(__file__).parent / "results"
BODY = json.dumps(
    {
        "model": "bench",
        "messages": [
            {"role": "system", "content": "You are a benchmark. " * 20},
            {"role": "user", "content": "[[ ## question ## ]]\nWhat is 2 + 2?"},
        ],
    }
).encode()

AIOHTTP_SERVER = r"""
import itertools, sys, time
import msgspec
from aiohttp import web
from dspex.testing import Reply
from dspex.testing._bodies import chat_completion

reply = Reply("[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]")
decode = msgspec.json.decode

async def chat(request):
    body = decode(await request.read())
    return web.Response(body=chat_completion(reply, body, "bench"), content_type="application/json")

app = web.Application()
app.router.add_post("/v1/chat/completions", chat)

async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    await __import__("asyncio").Event().wait()

import asyncio
asyncio.run(main())
"""


def spawn(kind: str) -> tuple[subprocess.Popen[str], str]:
    """Start one server process; return it and its base URL."""
    if kind == "scripted_lm":
        reply = "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
        args = [sys.executable, "-m", "dspex.testing", "serve", "--reply", reply]
    else:
        args = [sys.executable, "-c", AIOHTTP_SERVER]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


async def measure(url: str, pid: int, requests: int, concurrency: int) -> dict[str, float]:
    """Sequential latency and concurrent throughput of one server."""
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(url + "/chat/completions", data=BODY, headers=headers) as r:
                await r.read()

        for _ in range(200):  # warm up
            await one()
        start = time.perf_counter()
        for _ in range(requests):
            await one()
        sequential = (time.perf_counter() - start) / requests

        async def worker(count: int) -> None:
            for _ in range(count):
                await one()

        cpu_before = process_cpu_seconds(pid)
        start = time.perf_counter()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        done = requests // concurrency * concurrency
        server_cpu = process_cpu_seconds(pid) - cpu_before
    return {
        "sequential_us": sequential * 1e6,
        "throughput_rps": done / elapsed,
        "server_cpu_us_per_request": server_cpu / done * 1e6,
    }


def main() -> None:
    """Run both servers and print the comparison."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    args = parser.parse_args()
    if args.quick:
        args.requests //= 4
    servers = {kind: spawn(kind) for kind in ("scripted_lm", "aiohttp_web")}
    results: dict[str, dict[str, float]] = {}
    try:
        for _ in range(args.rounds):  # interleaved, so that load changes hit both alike
            for kind, (proc, url) in servers.items():
                row = asyncio.run(measure(url, proc.pid, args.requests, args.concurrency))
                best = results.setdefault(kind, row)
                best["sequential_us"] = min(best["sequential_us"], row["sequential_us"])
                best["throughput_rps"] = max(best["throughput_rps"], row["throughput_rps"])
                best["server_cpu_us_per_request"] = min(
                    best["server_cpu_us_per_request"], row["server_cpu_us_per_request"]
                )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    print(f"{'server':<14}{'sequential µs':>15}{'req/s @' + str(args.concurrency):>12}", end="")
    print(f"{'server CPU µs/req':>20}")
    for kind, row in results.items():
        print(
            f"{kind:<14}{row['sequential_us']:>15.0f}{row['throughput_rps']:>12.0f}"
            f"{row['server_cpu_us_per_request']:>20.1f}"
        )
    ratio = results["aiohttp_web"]["server_cpu_us_per_request"] / max(
        results["scripted_lm"]["server_cpu_us_per_request"], 1e-9
    )
    print(f"aiohttp.web uses {ratio:.1f}x the server CPU per request of ScriptedLM")
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": "bench_scripted_lm",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "results": results,
        "aiohttp_cpu_ratio": ratio,
    }
    (RESULTS / "bench_scripted_lm.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
