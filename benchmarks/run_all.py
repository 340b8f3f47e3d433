"""Run every benchmark script in its own process and print one summary table.

    python benchmarks/run_all.py [--quick]      (or: make bench)

Each script prints its own table and writes ``results/<name>.json``; this collects them into
``results/summary.json``. Exits non-zero if any target was missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    parser = argparse.ArgumentParser(description="run all dspex benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    failed = []
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"\n$ {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(script.name)
    rows = []
    for script in scripts:
        result = HERE / "results" / f"{script.stem}.json"
        if result.exists():
            data = json.loads(result.read_text())
            rows += [dict(row, bench=data["bench"]) for row in data["rows"]]
    print("\nsummary")
    for row in rows:
        verdict = {True: "met", False: "MISSED", None: ""}[row["met"]]
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else ""
        print(
            f"  {row['bench']:18} {row['name']:44} {row['value']:>12,.2f} {row['unit']:<4}"
            f" {ratio:>8}  {row['target']} {verdict}"
        )
    (HERE / "results" / "summary.json").write_text(json.dumps(rows, indent=2))
    if failed:
        print(f"\nmissed targets or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
