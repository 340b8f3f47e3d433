"""Throughput and latency against concurrency, LM latency 100 ms, beside DSPy and the ceiling.

    python benchmarks/bench_throughput.py [--quick] [--levels 1,10,100,1000,5000]

One ScriptedLM in its own process answers every request after 100 ms, concurrently (a timer per
request). Against it, ``callers`` concurrent closed-loop callers (each sends its next call when
the last one returns) of each contender:

- ``raw aiohttp``: the ceiling, a raw aiohttp client POSTing the request dspex sends (+ JSON
  decode + regex parse), pool of 5,000 connections;
- ``dspex native`` and ``dspex on dspy``: ``await module(question=...)`` on one Predict module of
  a Runtime configured with ``max_concurrency=5000`` and ``mailbox_size=10000`` (the defaults,
  256 and 1,024, would bound the calls in flight per module) and a native pool of 5,000
  connections (see ``_common.dspex_runtime``);
- ``dspy acall``: plain ``dspy.Predict.acall`` from asyncio tasks (DSPy's default engine, cache
  off);
- ``dspy.Parallel``: plain DSPy's thread pool, ``num_threads=callers``, over a batch of inputs.

Each (contender, callers) pair runs in a fresh process: warm-up until as many calls have completed
as there are callers (at most ``--warmup-cap`` s), then calls completed in a ``--window`` count;
latency is that of those calls. raw and native run in interleaved rounds (best of them); the
DSPy-based contenders, 10-50x apart, once. Each run also reports its client CPU per call, the
part of it spent in Python's cyclic GC, and the server's CPU per call: the server must never be
the bottleneck (its capacity is checked against the ceiling's throughput).

Targets: at 1,000 and 5,000 callers dspex native >= 90% of the raw client's throughput, and above
DSPy acall and dspy.Parallel. Writes results/bench_throughput.json and plots/throughput.png,
plots/latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    INPUTS,
    MAX_CALLERS,
    PLOTS,
    SIGNATURE,
    Call,
    Row,
    ScriptedServer,
    dspex_runtime,
    dspy_call,
    dspy_lm,
    floor_call,
    percentile,
    process_cpu_seconds,
    quiet,
    report,
    request_body,
    run_json,
)

LATENCY = 0.1
LEVELS = (1, 10, 100, 1000, 5000)
#: contender -> label; the first two run in every round, the others once.
CONTENDERS = {
    "raw": "raw aiohttp (ceiling)",
    "native": "dspex native",
    "dspex_dspy": "dspex on dspy",
    "acall": "dspy acall + gather",
    "parallel": "dspy.Parallel (threads)",
}
EVERY_ROUND = ("raw", "native")


class GCClock:
    """Time spent in Python's cyclic garbage collector, from ``gc.callbacks``: in all, and
    each collection of the older generations (1 and 2, which walk every call in flight)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.old: list[float] = []
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            took = time.perf_counter() - self._start
            self.total += took
            if info["generation"] > 0:
                self.old.append(took)


class Window:
    """What one measurement window saw: completions, latencies, CPU of client and server."""

    def __init__(self, server_pid: int, gc_clock: GCClock):
        self.server_pid, self.gc_clock = server_pid, gc_clock
        self.latencies: list[float] = []
        self.open = False

    def start(self) -> None:
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        self.server0, self.gc0 = process_cpu_seconds(self.server_pid), self.gc_clock.total
        self.open = True

    def stop(self) -> dict[str, float]:
        self.open = False
        elapsed = time.perf_counter() - self.t0
        cpu, server = time.process_time() - self.cpu0, process_cpu_seconds(self.server_pid)
        n = len(self.latencies)
        per_call = 1e6 / max(n, 1)
        return {
            "throughput": n / elapsed,
            "calls": n,
            "p50_ms": percentile(self.latencies, 50) * 1e3 if n else float("nan"),
            "p99_ms": percentile(self.latencies, 99) * 1e3 if n else float("nan"),
            "client_cpu_us": cpu * per_call,
            "gc_us": (self.gc_clock.total - self.gc0) * per_call,
            "server_cpu_us": (server - self.server0) * per_call,
            "server_busy": (server - self.server0) / elapsed,
        }

    def record(self, started: float) -> None:
        if self.open:
            self.latencies.append(time.perf_counter() - started)


async def closed_loop(call: Call, callers: int, window: Window, seconds: float, cap: float) -> Any:
    """``callers`` tasks calling ``call`` back to back; measure one window after the warm-up."""
    done = errors = 0
    failure: list[BaseException] = []
    warm = asyncio.Event()

    async def caller() -> None:
        nonlocal done, errors
        while True:
            started = time.perf_counter()
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
            window.record(started)

    await call()  # imports, first connection
    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    begin = time.perf_counter()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(warm.wait(), cap)
    warmup = time.perf_counter() - begin
    if done == 0 and failure:
        raise failure[0]
    window.start()
    await asyncio.sleep(seconds)
    return {**window.stop(), "warmup_s": warmup, "errors": errors, "tasks": len(tasks)}


async def async_contender(kind: str, callers: int, url: str, window: Window, args: Any) -> Any:
    if kind == "raw":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=MAX_CALLERS, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            call = floor_call(session, url, request_body())
            return await closed_loop(call, callers, window, args.window, args.warmup_cap)
    if kind == "acall":
        import dspy

        call = dspy_call(dspy.Predict(SIGNATURE), dspy_lm(url))
        return await closed_loop(call, callers, window, args.window, args.warmup_cap)
    import dspex

    impl = "native" if kind == "native" else "dspy"
    async with dspex_runtime(url, callers=MAX_CALLERS) as rt:
        module = await dspex.Predict.create(SIGNATURE, implementation=impl, runtime=rt)
        return await closed_loop(
            lambda: module(**INPUTS), callers, window, args.window, args.warmup_cap
        )


def parallel_contender(callers: int, url: str, window: Window, args: Any) -> Any:
    """dspy.Parallel(num_threads=callers) in a thread over a batch long enough to outlast the
    window; items past the window return at once. The process exits without waiting for it."""
    import dspy

    module, lm = dspy.Predict(SIGNATURE), dspy_lm(url)
    deadline = float("inf")
    done = 0

    def item(**inputs: Any) -> Any:
        nonlocal done
        if time.perf_counter() > deadline:
            return None
        started = time.perf_counter()
        result = module(**inputs)
        done += 1
        window.record(started)
        return result

    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        item(**INPUTS)  # imports, first connection
    budget = min(callers / LATENCY, 1500) * (args.warmup_cap + args.window) * 1.5
    batch = [(item, dict(INPUTS)) for _ in range(callers + int(budget) + 100)]
    runner = dspy.Parallel(num_threads=callers, max_errors=len(batch), disable_progress_bar=True)

    def run() -> None:
        with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
            runner(batch)

    threading.Thread(target=run, daemon=True).start()
    begin = time.perf_counter()
    while done < callers and time.perf_counter() - begin < args.warmup_cap:
        time.sleep(0.02)
    warmup = time.perf_counter() - begin
    window.start()
    time.sleep(args.window)
    result = window.stop()
    deadline = 0.0
    return {**result, "warmup_s": warmup, "errors": 0, "tasks": callers}


def worker(args: Any) -> None:
    """One (contender, callers) measurement; prints its JSON and exits without draining."""
    quiet()
    window = Window(args.server_pid, GCClock())
    if args.worker == "parallel":
        result = parallel_contender(args.callers, args.url, window, args)
    else:
        result = asyncio.run(async_contender(args.worker, args.callers, args.url, window, args))
    print(json.dumps(result), flush=True)
    os._exit(0)  # in-flight calls and threads die with the process


def sweep(server: ScriptedServer, args: Any) -> dict[str, dict[int, dict[str, float]]]:
    """Every contender at every level; best throughput of the rounds each runs in."""
    best: dict[str, dict[int, dict[str, float]]] = {kind: {} for kind in CONTENDERS}
    for round_ in range(args.rounds):
        for kind in CONTENDERS:
            if round_ and kind not in EVERY_ROUND:
                continue
            for callers in args.levels:
                command = [__file__, "--worker", kind, "--callers", str(callers)]
                command += ["--url", server.url, "--server-pid", str(server.pid)]
                command += ["--window", str(args.window), "--warmup-cap", str(args.warmup_cap)]
                result = run_json(command, timeout=120 + 2 * args.warmup_cap)
                old = best[kind].get(callers)
                if old is None or result["throughput"] > old["throughput"]:
                    best[kind][callers] = result
                print(
                    f"  round {round_ + 1} {CONTENDERS[kind]:24} {callers:>5} callers: "
                    f"{result['throughput']:8,.0f} calls/s, p50 {result['p50_ms']:8.1f} ms, "
                    f"CPU {result['client_cpu_us']:6.0f} us/call (GC {result['gc_us']:4.0f}), "
                    f"{result['errors']} errors",
                    file=sys.stderr,
                    flush=True,
                )
    return best


def print_matrix(best: dict[str, dict[int, dict[str, float]]], levels: list[int]) -> None:
    print("\nthroughput, calls/s (p50 latency, ms) by concurrent callers; LM latency 100 ms")
    print(f"{'':26}" + "".join(f"{c:>20,}" for c in levels))
    for kind, label in CONTENDERS.items():
        cells = [best[kind][c] for c in levels]
        print(
            f"{label:26}"
            + "".join(f"{r['throughput']:>10,.0f} ({r['p50_ms']:>6,.0f})" for r in cells)
        )
    print("\nclient CPU per call, us (of which cyclic GC)")
    for kind, label in CONTENDERS.items():
        cells = [best[kind][c] for c in levels]
        print(
            f"{label:26}"
            + "".join(f"{r['client_cpu_us']:>12,.0f} ({r['gc_us']:>5,.0f})" for r in cells)
        )


def plot(best: dict[str, dict[int, dict[str, float]]], levels: list[int]) -> list[Path]:
    """Throughput and latency against concurrency, log-log, one line per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(exist_ok=True)
    paths = []
    for key, ylabel, name in (
        ("throughput", "calls/s", "throughput"),
        ("p50_ms", "median latency, ms", "latency"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for kind, label in CONTENDERS.items():
            ys = [best[kind][c][key] for c in levels]
            ax.plot(levels, ys, marker="o", label=label)
            if key == "p50_ms":
                p99 = [best[kind][c]["p99_ms"] for c in levels]
                ax.plot(levels, p99, linestyle=":", color=ax.lines[-1].get_color())
        if key == "throughput":
            ax.plot(
                levels,
                [c / LATENCY for c in levels],
                "k--",
                lw=0.8,
                label="ideal (callers / 100 ms)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent callers")
        ax.set_ylabel(ylabel + (" (dotted: p99)" if key == "p50_ms" else ""))
        ax.set_title(f"{name.capitalize()} against concurrency, LM latency 100 ms, 2 cores")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = PLOTS / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def rows(best: dict[str, dict[int, dict[str, float]]], levels: list[int]) -> list[Row]:
    out = []
    raw_peak = max(best["raw"][c]["throughput"] for c in levels)
    server_us = max(best["raw"][c]["server_cpu_us"] for c in levels if c >= 100) or 1.0
    capacity = 1e6 / server_us
    out.append(
        Row(
            "ScriptedLM capacity (1 core) vs ceiling's peak",
            capacity,
            "/s",
            baseline=raw_peak,
            baseline_name="raw aiohttp peak",
            target=">= 1.5x",
            ok=capacity >= 1.5 * raw_peak,
            note="the server would limit the ceiling: run several ScriptedLM processes",
        )
    )
    for c in (c for c in levels if c >= 100):
        native, raw = best["native"][c], best["raw"][c]
        extra = native["client_cpu_us"] - raw["client_cpu_us"]
        out.append(
            Row(
                f"native vs raw client @{c} callers",
                native["throughput"],
                "/s",
                baseline=raw["throughput"],
                baseline_name="raw aiohttp",
                target=">= 0.9x" if c >= 1000 else "reported",
                ok=native["throughput"] >= 0.9 * raw["throughput"] if c >= 1000 else None,
                note=(
                    f"client CPU-bound on one core: native spends {native['client_cpu_us']:.0f}"
                    f" us CPU per call ({native['gc_us']:.0f} in GC) vs {raw['client_cpu_us']:.0f}"
                    f" ({raw['gc_us']:.0f}) for the raw client: +{extra:.0f} us of actor hops,"
                    " routing, adapters, LM client and GC; see benchmarks/README.md"
                ),
            )
        )
    for c in (c for c in levels if c >= 1000):
        for kind, short in (("acall", "dspy acall"), ("parallel", "dspy.Parallel")):
            out.append(
                Row(
                    f"native vs {short} @{c} callers",
                    best["native"][c]["throughput"],
                    "/s",
                    baseline=best[kind][c]["throughput"],
                    baseline_name=CONTENDERS[kind],
                    target="> 1x",
                    ok=best["native"][c]["throughput"] > best[kind][c]["throughput"],
                )
            )
        out.append(
            Row(
                f"dspex on dspy vs dspy acall @{c} callers",
                best["dspex_dspy"][c]["throughput"],
                "/s",
                baseline=best["acall"][c]["throughput"],
                baseline_name="dspy acall (default engine)",
                target="reported",
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows, one round")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--worker", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--callers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=float, default=2.5, help="seconds measured per run")
    parser.add_argument("--warmup-cap", type=float, default=30.0, help="max warm-up seconds")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of raw and native")
    args = parser.parse_args()
    if args.worker:
        worker(args)
    if args.quick:
        args.window, args.warmup_cap, args.rounds = 1.5, 6.0, 1
    args.levels = [int(c) for c in args.levels.split(",")]
    if max(args.levels) > MAX_CALLERS:
        parser.error(f"at most {MAX_CALLERS} callers")
    with ScriptedServer(latency=LATENCY) as server:
        best = sweep(server, args)
    print_matrix(best, args.levels)
    paths = plot(best, args.levels)
    print("plots: " + ", ".join(str(p.relative_to(Path(__file__).parent.parent)) for p in paths))
    matrix = {
        CONTENDERS[kind]: {str(c): result for c, result in per.items()}
        for kind, per in best.items()
    }
    extra = {"latency_s": LATENCY, "levels": args.levels, "matrix": matrix}
    return 0 if report("bench_throughput", rows(best, args.levels), extra) else 1


if __name__ == "__main__":
    sys.exit(main())
