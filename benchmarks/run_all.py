"""Run every benchmark script in its own process and print one summary table.

    python benchmarks/run_all.py [--quick] [--strict] [--only NAME ...]     (or: make bench)

Each ``bench_*.py`` prints its own table and writes ``results/<name>.json``; this collects the
rows of the scripts it ran into ``results/summary.json`` and prints them in one table, with the
reason beside every missed target. bench_throughput.py also draws ``plots/*.png``.

Exit status: 1 if a script failed to run (or, with ``--strict``, if a target was missed), else 0:
a missed target is a finding the table reports, not a broken benchmark.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def summary(rows: list[dict[str, object]]) -> str:
    """The rows as one plain-text table (also what benchmarks/README.md shows)."""
    lines = [
        f"{'bench':18} {'figure':50} {'value':>14} {'baseline':>12} {'ratio':>8}  target",
        "-" * 118,
    ]
    for row in rows:
        verdict = {True: "met", False: "MISSED", None: ""}[row["met"]]  # type: ignore[index]
        ratio = f"{row['ratio']:.3f}x" if row["ratio"] is not None else ""
        base = f"{row['baseline']:,.2f}" if row["baseline"] is not None else ""
        value = f"{row['value']:,.2f} {row['unit']}"
        lines.append(
            f"{row['bench']:18} {row['name']:50} {value:>14} {base:>12} {ratio:>8}  "
            f"{row['target']} {verdict}".rstrip()
        )
        if row["met"] is False and row.get("note"):
            lines.append(f"{'':18} why: {row['note']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="run all dspex benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer iterations, shorter windows")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--only", nargs="*", default=(), help="script names, e.g. bench_memory")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only or s.name in args.only]
    failed, rows = [], []
    started = time.perf_counter()
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"\n$ {' '.join(cmd[1:])}", flush=True)
        began, clock = time.time(), time.perf_counter()
        proc = subprocess.run(cmd, check=False)
        print(f"({script.name}: {time.perf_counter() - clock:.0f} s)", flush=True)
        result = RESULTS / f"{script.stem}.json"
        if not result.exists() or result.stat().st_mtime < began:
            failed.append(f"{script.name} (exit {proc.returncode}, no results)")
            continue
        data = json.loads(result.read_text())
        rows += [dict(row, bench=data["bench"]) for row in data.get("rows", ())]
    minutes = (time.perf_counter() - started) / 60
    table = summary(rows)
    print(f"\nsummary ({len(scripts)} scripts, {minutes:.1f} min)\n{table}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "summary.txt").write_text(table + "\n")
    missed = [f"{row['bench']}: {row['name']}" for row in rows if row["met"] is False]
    if missed:
        print("\nmissed targets:\n  " + "\n  ".join(missed))
    if failed:
        print("\nfailed to run:\n  " + "\n  ".join(failed))
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
