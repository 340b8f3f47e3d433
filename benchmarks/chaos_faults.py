"""Issue 14's LM-fault load, 10 runs: every call ends in a Prediction or a DSPexError.

    python benchmarks/chaos_faults.py [--runs 10] [--calls 2000] [--concurrency 200]

Each run is a fresh interpreter (DSPy cold, as a service starts) running ``dspex.testing.soak``
with ``Config()`` defaults: ``calls`` Predict and ChainOfThought calls, ``concurrency`` at a
time, against an LM that answers 5% HTTP 500s, hangs past the LM's own ``timeout=1.0`` on 1%,
sends 2% malformed bodies and 2% replies with no field headers, with ``LM(num_retries=0)`` and
no call deadline. Prints each run's reconciliation and the totals; writes
benchmarks/results/chaos_faults.json. Exits 1 unless, in every run: 0 calls escaped the error
tree (successes + DSPexErrors = calls submitted), 0 hung (a run is cut after 240 s), 0 dspex
tasks, worker threads or child processes left after the runtime exited.

Not part of `make bench` (about 10 s a run on 2 cores); tests/modules/test_lm_faults_load.py
runs the same load twice in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import Row, report

import dspex
from dspex.testing import soak
from dspex.testing._soak import summary

#: A run still going after this many seconds counts as hung.
GUARD = 240.0


async def one_run(calls: int, concurrency: int, seed: int) -> dict[str, object]:
    """One run of the load in this interpreter, as plain data."""
    logging.getLogger("dspex").setLevel(logging.CRITICAL)
    result = await asyncio.wait_for(
        soak(
            calls,
            concurrency=concurrency,
            config=dspex.Config(),
            native_crash_rate=0.0,
            lm_error_rate=0.05,
            lm_error_status=500,
            lm_hang_rate=0.01,
            malformed_rate=0.04,  # half malformed bodies, half replies with no field headers
            lm_timeout=1.0,
            lm_retries=0,
            seed=seed,
        ),
        timeout=GUARD,
    )
    return summary(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1, help="of the first run; then +1 each")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(one_run(args.calls, args.concurrency, args.seed))))
        return 0
    runs, hung, failed = [], 0, 0
    for seed in range(args.seed, args.seed + args.runs):
        cmd = [sys.executable, __file__, "--one", "--seed", str(seed)]
        cmd += ["--calls", str(args.calls), "--concurrency", str(args.concurrency)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=GUARD + 60)
        if out.returncode != 0:
            hung += "TimeoutError" in out.stderr
            failed += 1
            print(f"run {seed}: failed\n{out.stderr[-2000:]}")
            continue
        run = json.loads(out.stdout.splitlines()[-1])
        runs.append(run)
        print(
            f"run {seed}: {run['submitted']} calls = {run['succeeded']} predictions "
            f"+ {sum(run['errors'].values())} DSPexErrors {run['errors']} + {run['lost']} "
            f"escaped; {run['fallbacks']} fallbacks; left: {run['tasks_left']} tasks, "
            f"{run['threads_left']} threads, {run['processes_left']} processes; "
            f"{run['seconds']:.1f} s"
        )
    errors: Counter[str] = Counter()
    for run in runs:
        errors.update(run["errors"])
    submitted = sum(r["submitted"] for r in runs)
    succeeded = sum(r["succeeded"] for r in runs)
    escaped = sum(r["lost"] for r in runs)
    left = sum(r["tasks_left"] + r["threads_left"] + r["processes_left"] for r in runs)
    print(
        f"\n{len(runs)} runs: {submitted} calls = {succeeded} predictions + "
        f"{sum(errors.values())} DSPexErrors {dict(errors)} + {escaped} escaped"
    )
    rows = [
        Row("runs completed", len(runs), "", target=str(args.runs), ok=len(runs) == args.runs),
        Row("calls escaping the error tree", escaped, "", target="0", ok=escaped == 0),
        Row("runs hung", hung, "", target="0", ok=hung == 0 and failed == 0),
        Row(
            "calls reconciled",
            sum(bool(r["reconciled"]) for r in runs),
            "runs",
            target=f"{len(runs)}",
            ok=all(r["reconciled"] for r in runs),
        ),
        Row("tasks, threads, processes left", left, "", target="0", ok=left == 0),
        Row("succeeded", 100 * succeeded / max(1, submitted), "%", target="reported"),
    ]
    ok = report("chaos_faults", rows, {"runs": runs, "errors": dict(errors)})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
