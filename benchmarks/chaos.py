"""The long chaos run: 100,000 calls under faults, reconciled.

    python benchmarks/chaos.py [--calls 100000] [--concurrency 50] [--seed 1] [--dspy-workers N]

Native crashes 5%, LM 5xx 5%, LM hangs 1% (cut within each call's 2 s deadline), malformed and
unparsable replies 2%. Prints the counts and writes benchmarks/results/chaos.json. Exits 1
unless: 0 calls lost (successes + typed errors = calls submitted), 0 callers past their
deadline, 0 dspex tasks left after shutdown, restart intensity held (the module supervisor
never gave up), RSS drift under 5% between the first and last tenth of the run.

Not part of `make bench` (it runs for a quarter of an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import Row, report

from dspex.testing import soak
from dspex.testing._soak import summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dspy-workers",
        type=int,
        default=None,
        help="dspy worker processes (default: Config's, one per core; 0: in process)",
    )
    args = parser.parse_args()
    logging.getLogger("dspex").setLevel(logging.CRITICAL)  # thousands of crash reports
    result = asyncio.run(
        soak(
            args.calls,
            concurrency=args.concurrency,
            seed=args.seed,
            dspy_workers=args.dspy_workers,
        )
    )
    for key, value in summary(result).items():
        print(f"{key:24} {value}")
    rows = [
        Row("calls submitted", result.submitted, "", target="reported"),
        Row("calls lost", result.lost, "", target="0", ok=result.lost == 0 and result.reconciled),
        Row(
            "callers past their deadline",
            result.past_deadline,
            "",
            target="0",
            ok=result.past_deadline == 0,
        ),
        Row(
            "dspex tasks left after shutdown",
            result.tasks_left,
            "",
            target="0",
            ok=result.tasks_left == 0,
        ),
        Row(
            "module supervisor gave up",
            result.supervisor_escalations,
            "",
            target="0",
            ok=result.supervisor_escalations == 0,
        ),
        Row(
            "RSS drift, first vs last tenth",
            100 * result.rss_drift,
            "%",
            target="< 5%",
            ok=abs(result.rss_drift) < 0.05,
        ),
        Row("succeeded", 100 * result.succeeded / result.submitted, "%", target="reported"),
        Row(
            "native crashes (each cost its call alone)",
            result.native_crashes,
            "",
            target="reported",
        ),
        Row("module actor restarts", result.restarts, "", target="reported"),
        Row("fallbacks", result.fallbacks, "", target="reported"),
    ]
    name = "chaos" if args.dspy_workers is None else f"chaos_{args.dspy_workers}_workers"
    return 0 if report(name, rows) else 1


if __name__ == "__main__":
    sys.exit(main())
