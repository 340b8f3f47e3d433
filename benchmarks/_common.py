"""Shared by the benchmark scripts: timing helpers, a table printer and the JSON writer.

Every figure is reported beside a baseline measured in the same run, and targets are ratios.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dspex.lm import LM, Completion, Usage

RESULTS = Path(__file__).parent / "results"


class InstantClient:
    """Stands in for LMClient: answers every request at once with the same completion, without
    HTTP, so a benchmark sees the framework's own cost."""

    def __init__(self, text: str):
        self.completion = Completion(
            texts=[text], finish_reasons=["stop"], usage=Usage(), model="instant"
        )

    async def complete(self, lm: LM, messages: object, **options: object) -> Completion:
        return self.completion


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


@contextlib.contextmanager
def scripted_server(reply: str, latency: float = 0.0) -> Iterator[str]:
    """A ScriptedLM in its own process (so it does not compete for this process's CPU),
    answering ``reply`` after ``latency`` seconds; yields its base URL."""
    command = [sys.executable, "-m", "dspex.testing", "serve", "--reply", reply]
    proc = subprocess.Popen(
        [*command, "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait()


async def sequential(call: Callable[[], Awaitable[object]], requests: int) -> tuple[float, float]:
    """Mean wall and CPU microseconds per call, one at a time, after a warm-up."""
    for _ in range(max(20, requests // 10)):
        await call()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await call()
    return (
        (time.perf_counter() - wall) / requests * 1e6,
        (time.process_time() - cpu) / requests * 1e6,
    )


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
