"""``dspex compare``: a module, or a DSPy program, over a dataset on both implementations, and
a report."""

from __future__ import annotations

import csv
import html
import importlib
import inspect
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console

import dspex
from dspex.cli._console import print_table
from dspex.config import IMPLEMENTATIONS
from dspex.errors import ConfigError, DSPexError, InputError
from dspex.signature import Signature

MODULES = {"Predict": dspex.Predict, "ChainOfThought": dspex.ChainOfThought}
MAX_DIVERGING = 50
"""The report lists at most this many rows that differ, each with both outputs whole."""


class Run(msgspec.Struct, frozen=True):
    """One row on one implementation."""

    implementation: str
    output: dict[str, Any] | None
    error: str | None
    seconds: float
    prompt_tokens: int
    completion_tokens: int


class Comparison(msgspec.Struct, frozen=True):
    """The figures of a comparison, per output field and per implementation.

    ``accuracy`` is per implementation, over the ``scored`` rows that have an ``expected`` value
    (see :func:`matches`); None when no row has one.
    """

    rows: int
    fields: list[str]
    answer_field: str
    scored: int
    accuracy: dict[str, float] | None
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


def check_inputs(rows: list[dict[str, Any]], sig: Signature) -> None:
    """Raise InputError, naming the missing columns and the row's own, when a row lacks one of
    the signature's input fields."""
    for number, row in enumerate(rows, 1):
        missing = [name for name in sig.input_names if name not in row]
        if missing:
            raise InputError(
                f"row {number} of the dataset lacks the column(s) {', '.join(missing)}, input(s) "
                f"of the signature {sig.signature!r}; the row has the columns: "
                f"{', '.join(row) or 'none'}. Each input of --signature must be a column."
            )


def matches(output: object, expected: object) -> bool:
    """Whether the expected answer's words occur together, in order, among the output's words,
    ignoring case and punctuation: "Paris" matches "Paris, France." but "0" does not match "10"
    and "Au" does not match "Australia". An expected value without words matches nothing."""
    want = re.findall(r"\w+", str(expected).lower())
    have = re.findall(r"\w+", str(output).lower())
    n = len(want)
    return n > 0 and any(have[i : i + n] == want for i in range(len(have) - n + 1))


async def _one(module: dspex.ModuleRef, inputs: dict[str, Any], impl: str) -> Run:
    start = time.perf_counter()
    try:
        # not from the response cache: each implementation's own LM reply, latency and tokens
        pred = await module.execute(inputs, cache=False)
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
    rows: list[dict[str, Any]], sig: Signature, module_type: str = "Predict"
) -> Comparison:
    """Run every row through both implementations (in the current runtime) and compare.

    Rows are run one at a time, alternating which implementation goes first so that an LM
    server's prompt cache favours neither. A row with an ``expected`` value is scored on each
    implementation: correct when :func:`matches` finds it in the signature's first output field.
    Raises ConfigError for an unknown module type.
    """
    if module_type not in MODULES:
        raise ConfigError(f"--module must be one of {sorted(MODULES)}, got {module_type!r}")
    if module_type == "ChainOfThought":
        fields = ["reasoning", *sig.output_names]
    else:
        fields = list(sig.output_names)
    facade = MODULES[module_type]
    modules: dict[str, dspex.ModuleRef] = {
        impl: await facade.create(sig, implementation=impl) for impl in IMPLEMENTATIONS
    }
    names = sig.input_names
    runs = await _run_rows(rows, modules, lambda row: {k: v for k, v in row.items() if k in names})
    return _figures(rows, runs, fields, sig.output_names[0])


async def compare_program(
    rows: list[dict[str, Any]], program: Any, state: Path | None = None
) -> Comparison:
    """Like :func:`compare`, for a DSPy program: ``program`` (a ``dspy.Module`` class or a
    zero-argument factory) wrapped with ``implementation="dspy"`` (the whole program on DSPy)
    against ``implementation="native"`` (each predictor on native; when native cannot serve
    them all, the default: each on native where native serves it, the others on dspy), after
    loading its saved ``state`` (``program.save("prog.json")``) if given. Forced, so that
    neither side's calls are routed to the other by the runtime's routing (adaptive
    exploration, a rollout). Each row passes the columns the program's ``forward`` takes (all
    but ``expected`` when it takes ``**kwargs``); the outputs compared are the Prediction's
    fields, the answer scored its ``answer`` (else its first). ConfigError when the program
    cannot be built or its state loaded."""

    async def build(implementation: str | None) -> dspex.ModuleRef:
        if state is not None:
            return await dspex.load(state, program=program, implementation=implementation)
        return await dspex.Module.wrap(program, implementation=implementation)

    modules: dict[str, dspex.ModuleRef] = {"dspy": await build("dspy")}
    try:
        modules["native"] = await build("native")
    except ConfigError:  # some predictor only runs on dspy: the others on native, routed
        modules["native"] = await build(None)
    modules = {impl: modules[impl] for impl in IMPLEMENTATIONS}  # the report's order
    params = program_inputs(program)
    names = {p.name for p in params} if params is not None else None

    def inputs_of(row: dict[str, Any]) -> dict[str, Any]:
        if names is None:
            return {k: v for k, v in row.items() if k != "expected"}
        return {k: v for k, v in row.items() if k in names}

    runs = await _run_rows(rows, modules, inputs_of)
    fields: list[str] = []
    for pair in runs:
        for run in pair:
            fields += [f for f in run.output or () if f not in fields]
    answer = "answer" if "answer" in fields or not fields else fields[0]
    return _figures(rows, runs, fields, answer)


def load_program(spec: str) -> Any:
    """The object ``spec`` (``package.module:name``, the name may be dotted) names, imported
    with the current directory on the import path; ConfigError saying what is wrong."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ConfigError(
            f"--program must be module:name, e.g. myapp.programs:DraftRefine, got {spec!r}"
        )
    if os.getcwd() not in sys.path:  # the installed script's path is its own directory
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except ImportError as exc:
        raise ConfigError(f"--program {spec}: cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        raise ConfigError(f"--program {spec}: {module_name!r} has no {attr!r}") from None
    if not callable(found):
        raise ConfigError(
            f"--program {spec} must name a dspy.Module class or a zero-argument factory of one"
        )
    return found


def program_inputs(program: Any) -> list[inspect.Parameter] | None:
    """The inputs the program's ``aforward`` (if its class has one) or ``forward`` takes; None
    when it takes ``**kwargs`` (then every column but ``expected`` is passed)."""
    cls = program if isinstance(program, type) else type(program())
    for c in cls.__mro__:
        method = vars(c).get("aforward") or vars(c).get("forward")
        if method is not None:
            params = list(inspect.signature(method).parameters.values())[1:]  # without self
            if any(p.kind is p.VAR_KEYWORD for p in params):
                return None
            return [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return None


def check_program_inputs(rows: list[dict[str, Any]], program: Any, spec: str) -> None:
    """InputError, naming the missing columns and the row's own, when a row lacks an input
    the program's ``forward`` requires."""
    required = [p.name for p in program_inputs(program) or () if p.default is p.empty]
    for number, row in enumerate(rows, 1):
        missing = [name for name in required if name not in row]
        if missing:
            raise InputError(
                f"row {number} of the dataset lacks the column(s) {', '.join(missing)}, "
                f"input(s) of the program {spec}; the row has the columns: "
                f"{', '.join(row) or 'none'}. Each input its forward requires must be a column."
            )


async def _run_rows(
    rows: list[dict[str, Any]],
    modules: dict[str, dspex.ModuleRef],
    inputs_of: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[list[Run]]:
    """Each row on both implementations, alternating which goes first, one row at a time."""
    runs: list[list[Run]] = []
    for i, row in enumerate(rows):
        inputs = inputs_of(row)
        order = IMPLEMENTATIONS if i % 2 == 0 else IMPLEMENTATIONS[::-1]
        pair = [await _one(modules[impl], inputs, impl) for impl in order]
        runs.append(sorted(pair, key=lambda r: IMPLEMENTATIONS.index(r.implementation)))
    return runs


def _figures(
    rows: list[dict[str, Any]], runs: list[list[Run]], fields: list[str], answer: str
) -> Comparison:
    """The comparison's figures from its runs."""
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
    scored = [
        (row["expected"], pair) for row, pair in zip(rows, runs, strict=True) if _expects(row)
    ]
    accuracy: dict[str, float] | None = None
    if scored:
        accuracy = {
            impl: sum(_correct(pair[k], answer, expected) for expected, pair in scored)
            / len(scored)
            for k, impl in enumerate(IMPLEMENTATIONS)
        }

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
        answer_field=answer,
        scored=len(scored),
        accuracy=accuracy,
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


def _expects(row: dict[str, Any]) -> bool:
    return row.get("expected") not in (None, "")


def _correct(run: Run, answer: str, expected: object) -> bool:
    return run.output is not None and matches(run.output.get(answer), expected)


def accuracy_note(result: Comparison) -> str:
    """How accuracy was measured, in one sentence (empty when no row has an expected value)."""
    if result.accuracy is None:
        return ""
    return (
        f"Accuracy: the share of the {result.scored} rows with an expected value whose "
        f"'{result.answer_field}' contains the expected answer's words, in order (case and "
        f"punctuation ignored); a failed call counts as wrong."
    )


IMPL_COLUMNS = (
    "impl.",
    "accuracy",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "errors",
    "prompt tok.",
    "completion tok.",
)


def _impl_cells(result: Comparison, impl: str) -> list[str]:
    lat, tok = result.latency_ms[impl], result.tokens[impl]
    return [
        impl,
        "-" if result.accuracy is None else f"{result.accuracy[impl]:.1%}",
        *(f"{lat[q]:.0f}" for q in ("p50", "p90", "p99")),
        str(result.errors[impl]),
        str(tok["prompt"]),
        str(tok["completion"]),
    ]


def print_comparison(result: Comparison, console: Console) -> None:
    """The comparison as terminal tables."""
    print_table(
        console,
        f"Agreement over {result.rows} rows (native vs dspy)",
        ("output field", "agreement"),
        [
            *([name, f"{rate:.1%}"] for name, rate in result.field_agreement.items()),
            ["all fields", f"{result.agreement:.1%}"],
        ],
        right={"agreement"},
    )
    print_table(
        console,
        "Per implementation",
        IMPL_COLUMNS,
        [_impl_cells(result, impl) for impl in IMPLEMENTATIONS],
        right=set(IMPL_COLUMNS[1:]),
    )
    if note := accuracy_note(result):
        console.print(note, markup=False)


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
        f"| {' | '.join(IMPL_COLUMNS)} |",
        "|---" * len(IMPL_COLUMNS) + "|",
        *(f"| {' | '.join(_impl_cells(result, impl))} |" for impl in IMPLEMENTATIONS),
        "",
    ]
    if note := accuracy_note(result):
        lines += [note, ""]
    if has_plot:
        lines += [f"![latency]({plot.name})", ""]
    diverging = [
        (i, n, d)
        for i, (n, d) in enumerate(result.runs)
        if n.output != d.output or n.error or d.error
    ]
    if diverging:
        heading = "## Rows that differ"
        if len(diverging) > MAX_DIVERGING:
            heading += f" (the first {MAX_DIVERGING} of {len(diverging)})"
        lines += [heading, "", "| row | native | dspy |", "|---|---|---|"]
        for i, n, d in diverging[:MAX_DIVERGING]:
            lines.append(f"| {i} | {_cell(n)} | {_cell(d)} |")
        lines.append("")
    text = _html(lines, title) if path.suffix == ".html" else "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return plot if has_plot else None


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
    return value.replace("|", "\\|").replace("\n", " ")
