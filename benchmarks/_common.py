"""Shared by the benchmark scripts: timing helpers, a table printer and the JSON writer.

Every figure is reported beside a baseline measured in the same run, and targets are ratios.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


class Row:
    """One measured figure: value, its baseline, and a target on the ratio (or the value)."""

    def __init__(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: float | None = None,
        baseline_name: str = "",
        target: str = "",
        ok: bool | None = None,
    ):
        self.name, self.value, self.unit = name, value, unit
        self.baseline, self.baseline_name = baseline, baseline_name
        self.target, self.ok = target, ok

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.ok,
        }


def median_of(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def report(bench: str, rows: list[Row]) -> bool:
    """Print the table, write ``results/<bench>.json``; True when every target is met."""
    print(f"\n{bench}")
    header = f"{'figure':44} {'value':>14} {'baseline':>14} {'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = f"{r.baseline:,.2f}" if r.baseline is not None else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        verdict = "" if r.ok is None else ("met" if r.ok else "MISSED")
        target = f"{r.target} {verdict}".strip()
        print(f"{r.name:44} {r.value:>10,.2f} {r.unit:<3} {base:>14} {ratio:>8}  {target}")
        if r.baseline_name:
            print(f"{'':44} {'':>14} {'(' + r.baseline_name + ')':>14}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{bench}.json"
    out.write_text(
        json.dumps(
            {"bench": bench, "machine": machine(), "rows": [r.as_dict() for r in rows]}, indent=2
        )
    )
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return all(r.ok is not False for r in rows)
