"""``dspex compare``: one program over a dataset on both implementations, and a report."""

from __future__ import annotations

import csv
import html
import json
import statistics
import time
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

import dspex
from dspex.config import IMPLEMENTATIONS
from dspex.errors import ConfigError, DSPexError, InputError
from dspex.signature import Signature

MODULES = {"Predict": dspex.Predict, "ChainOfThought": dspex.ChainOfThought}


class Run(msgspec.Struct, frozen=True):
    """One row on one implementation."""

    implementation: str
    output: dict[str, Any] | None
    error: str | None
    seconds: float
    prompt_tokens: int
    completion_tokens: int


class Comparison(msgspec.Struct, frozen=True):
    """The figures of a comparison, per output field and per implementation."""

    rows: int
    fields: list[str]
    field_agreement: dict[str, float]
    agreement: float
    latency_ms: dict[str, dict[str, float]]
    errors: dict[str, int]
    tokens: dict[str, dict[str, int]]
    runs: list[list[Run]]


def load_dataset(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` (one JSON object per line) or ``.csv`` (a header row) file."""
    if not path.is_file():
        raise ConfigError(f"dataset {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return [dict(row) for row in csv.DictReader(text.splitlines())]
    if path.suffix not in (".jsonl", ".ndjson"):
        raise ConfigError(f"dataset must be .jsonl or .csv, got {path.name}")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name} line {number} is not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise InputError(f"{path.name} line {number} is not a JSON object")
        rows.append(row)
    if not rows:
        raise InputError(f"{path.name} has no rows")
    return rows


async def _one(module: dspex.ModuleRef, inputs: dict[str, Any], impl: str) -> Run:
    start = time.perf_counter()
    try:
        pred = await module(**inputs)
    except DSPexError as exc:
        return Run(impl, None, type(exc).__name__, time.perf_counter() - start, 0, 0)
    usage = pred.usage
    return Run(
        impl,
        pred.to_dict(),
        None,
        time.perf_counter() - start,
        usage.get("prompt_tokens", 0),
        usage.get("completion_tokens", 0),
    )


async def compare(
    rows: list[dict[str, Any]], signature: str, module_type: str = "Predict"
) -> Comparison:
    """Run every row through both implementations (in the current runtime) and compare.

    Rows are run one at a time, alternating which implementation goes first so that an LM
    server's prompt cache favours neither.
    """
    if module_type not in MODULES:
        raise ConfigError(f"--module must be one of {sorted(MODULES)}, got {module_type!r}")
    sig = Signature.parse(signature)
    if module_type == "ChainOfThought":
        fields = ["reasoning", *sig.output_names]
    else:
        fields = list(sig.output_names)
    facade = MODULES[module_type]
    modules = {impl: await facade.create(sig, implementation=impl) for impl in IMPLEMENTATIONS}
    runs: list[list[Run]] = []
    for i, row in enumerate(rows):
        inputs = {k: v for k, v in row.items() if k in sig.input_names}
        order = IMPLEMENTATIONS if i % 2 == 0 else IMPLEMENTATIONS[::-1]
        pair = [await _one(modules[impl], inputs, impl) for impl in order]
        runs.append(sorted(pair, key=lambda r: IMPLEMENTATIONS.index(r.implementation)))
    agree = {f: 0 for f in fields}
    both = 0
    for native, dspy_run in runs:
        if native.output is None or dspy_run.output is None:
            continue
        both += 1
        for f in fields:
            agree[f] += native.output.get(f) == dspy_run.output.get(f)
    whole = sum(
        1 for n, d in runs if n.output is not None and d.output is not None and n.output == d.output
    )

    def pct(samples: list[float], q: float) -> float:
        return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))] * 1000

    latency: dict[str, dict[str, float]] = {}
    for k, impl in enumerate(IMPLEMENTATIONS):
        samples = [pair[k].seconds for pair in runs]
        latency[impl] = {
            "p50": pct(samples, 0.5),
            "p90": pct(samples, 0.9),
            "p99": pct(samples, 0.99),
            "mean": statistics.fmean(samples) * 1000,
        }
    return Comparison(
        rows=len(runs),
        fields=fields,
        field_agreement={f: agree[f] / both if both else 0.0 for f in fields},
        agreement=whole / len(runs) if runs else 0.0,
        latency_ms=latency,
        errors={
            impl: sum(pair[k].error is not None for pair in runs)
            for k, impl in enumerate(IMPLEMENTATIONS)
        },
        tokens={
            impl: {
                "prompt": sum(pair[k].prompt_tokens for pair in runs),
                "completion": sum(pair[k].completion_tokens for pair in runs),
            }
            for k, impl in enumerate(IMPLEMENTATIONS)
        },
        runs=runs,
    )


def print_comparison(result: Comparison, console: Console) -> None:
    """The comparison as terminal tables."""
    fields = Table(title=f"Agreement over {result.rows} rows (native vs dspy)")
    fields.add_column("output field")
    fields.add_column("agreement", justify="right")
    for name, rate in result.field_agreement.items():
        fields.add_row(name, f"{rate:.1%}")
    fields.add_row("[bold]all fields[/]", f"[bold]{result.agreement:.1%}[/]")
    console.print(fields)
    impls = Table(title="Per implementation")
    for column in ("implementation", "p50", "p90", "p99", "errors", "prompt tok.", "compl. tok."):
        impls.add_column(column, justify="left" if column == "implementation" else "right")
    for impl in IMPLEMENTATIONS:
        lat, tok = result.latency_ms[impl], result.tokens[impl]
        impls.add_row(
            impl,
            f"{lat['p50']:.0f} ms",
            f"{lat['p90']:.0f} ms",
            f"{lat['p99']:.0f} ms",
            str(result.errors[impl]),
            str(tok["prompt"]),
            str(tok["completion"]),
        )
    console.print(impls)


def plot_latency(result: Comparison, path: Path) -> bool:
    """A latency plot per implementation (needs matplotlib); False when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k, impl in enumerate(IMPLEMENTATIONS):
        samples = sorted(pair[k].seconds * 1000 for pair in result.runs)
        ax.plot(samples, [(i + 1) / len(samples) for i in range(len(samples))], label=impl)
    ax.set_xlabel("latency per call (ms)")
    ax.set_ylabel("share of calls")
    ax.set_title("Latency, native vs dspy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(result: Comparison, path: Path, title: str) -> Path | None:
    """Write the report (Markdown, or HTML for a ``.html`` path) and its latency plot; return
    the plot's path (None without matplotlib)."""
    plot = path.with_suffix(".png")
    has_plot = plot_latency(result, plot)
    lines = [
        f"# {title}",
        "",
        f"{result.rows} rows, each run on both implementations. "
        f"All output fields agree on {result.agreement:.1%} of rows.",
        "",
        "| output field | agreement |",
        "|---|---|",
        *(f"| {f} | {rate:.1%} |" for f, rate in result.field_agreement.items()),
        "",
        "| implementation | p50 ms | p90 ms | p99 ms | errors | prompt tok. | completion tok. |",
        "|---|---|---|---|---|---|---|",
        *(_impl_row(result, impl) for impl in IMPLEMENTATIONS),
        "",
    ]
    if has_plot:
        lines += [f"![latency]({plot.name})", ""]
    diverging = [
        (i, n, d)
        for i, (n, d) in enumerate(result.runs)
        if n.output != d.output or n.error or d.error
    ]
    if diverging:
        lines += ["## Rows that differ", "", "| row | native | dspy |", "|---|---|---|"]
        for i, n, d in diverging[:50]:
            lines.append(f"| {i} | {_cell(n)} | {_cell(d)} |")
        lines.append("")
    text = _html(lines, title) if path.suffix == ".html" else "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return plot if has_plot else None


def _impl_row(result: Comparison, impl: str) -> str:
    lat, tok = result.latency_ms[impl], result.tokens[impl]
    return (
        f"| {impl} | {lat['p50']:.0f} | {lat['p90']:.0f} | {lat['p99']:.0f} | "
        f"{result.errors[impl]} | {tok['prompt']} | {tok['completion']} |"
    )


def _html(lines: list[str], title: str) -> str:
    """The Markdown report's lines as an HTML page (headings, paragraphs, tables, the plot)."""
    out = [f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"]
    table: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
                tag = "th" if not table else "td"
                table.append("".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells))
            continue
        if table:
            out.append("<table>" + "".join(f"<tr>{row}</tr>" for row in table) + "</table>")
            table = []
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            out.append(f'<img src="{html.escape(src)}" alt="latency">')
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)


def _cell(run: Run) -> str:
    value = run.error or json.dumps(run.output, ensure_ascii=False, default=str)
    return value.replace("|", "\\|").replace("\n", " ")[:200]
