"""The dspex command without the model: arguments, help, errors, and the demo on a scripted LM."""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dspex._version import __version__
from dspex.cli import app
from dspex.cli._console import print_table
from dspex.cli._demo import QUESTIONS, calculator
from dspex.lm import _local
from tests.cli.conftest import ANSWER, closed_port_url, run_dspex

runner = CliRunner()
COMMANDS = [[], ["demo"], ["compare"], ["lm"], ["lm", "pull"], ["lm", "serve"], ["lm", "status"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--lm", "ftp://example"], "--lm must be an http:// or https:// URL"),
        (["demo", "--implementation", "rust"], "--implementation must be native, dspy"),
        (["demo", "--questions", "0"], "Input should be greater than or equal to 1"),
        (["demo", "--model", "gpt-9"], "unknown local model 'gpt-9'"),
        (["lm", "pull", "--model", "gpt-9"], "unknown local model 'gpt-9'"),
    ],
)
def test_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "40"})
    assert result.exit_code == 2
    error = result.output.splitlines()[-1]
    assert error.startswith("Error: ")
    assert message in error


@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help_under_both_flags(args: list[str], flag: str) -> None:
    result = runner.invoke(app, [*args, flag])
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: dspex {' '.join(args)}".rstrip())
    assert "-h, --help" in result.output


def test_version_prints_the_package_version() -> None:
    done = run_dspex("--version")
    assert done.returncode == 0
    assert done.stdout == f"dspex {__version__}\n"


def _description(help_text: str) -> list[list[str]]:
    """The paragraphs of a help text's description: the indented lines after ``Usage:``."""
    lines = help_text.splitlines()[1:]
    body = lines[: next(i for i, line in enumerate(lines) if line and not line[0].isspace())]
    paragraphs: list[list[str]] = [[]]
    for line in body[1:]:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


@pytest.mark.parametrize("columns", [60, 200])
@pytest.mark.parametrize("command", [["demo"], ["compare"], ["lm", "status"]])
def test_help_paragraphs_reflow_to_the_width(command: list[str], columns: int) -> None:
    done = run_dspex(*command, "-h", columns=columns)
    assert done.returncode == 0
    widest = max(map(len, done.stdout.splitlines()))
    assert widest <= columns
    paragraphs = _description(done.stdout)
    assert paragraphs
    for paragraph in paragraphs:
        # Filled greedily: no line would have had room for the next line's first word.
        for line, following in itertools.pairwise(paragraph):
            assert len(line) + 1 + len(following.split()[0]) > widest, done.stdout


def test_help_shows_square_brackets() -> None:
    assert "[local] extra" in run_dspex("lm", "-h").stdout
    assert "Show whether the [local] extra" in run_dspex("lm", "status", "-h").stdout


def test_lm_status_reports_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_local, "server_available", lambda: False)
    monkeypatch.setattr("dspex.cli.server_available", lambda: False)
    result = runner.invoke(app, ["lm", "status"])
    assert result.exit_code == 0
    assert "qwen2.5-coder-1.5b" in result.output
    assert 'pip install "dspex[local]"' in result.output


@pytest.mark.parametrize("extra", [[], ["--lm-model", "some-model"]])
def test_demo_against_an_endpoint_that_does_not_answer_says_how_to_start_one(
    extra: list[str],
) -> None:
    url = closed_port_url()
    done = run_dspex("demo", "--lm", url, *extra)
    assert done.returncode == 1
    error = done.stderr.strip()
    assert error.startswith(f"Error: the endpoint at {url} did not answer")
    assert "`dspex lm serve`" in error
    assert "--lm-model" not in error
    assert "\n" not in error


def test_demo_against_an_endpoint_that_lists_no_models_asks_for_the_model_name() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # 501 to every GET
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        done = run_dspex("demo", "--lm", url)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: {url} did not list its models (")
    assert done.stderr.endswith("pass --lm-model\n")


def test_demo_piped_prints_whole_rows_whatever_columns_says(scripted_url: str) -> None:
    done = run_dspex("demo", "--lm", scripted_url, "-n", str(len(QUESTIONS)), columns=40)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    lines = out.splitlines()
    assert "…" not in out
    assert re.search(r"^module +impl\. +question +answer +ok +latency +fallback$", out, re.M)
    for question, _ in QUESTIONS:
        for module in ("Predict", "ChainOfThought"):
            for impl in ("native", "dspy"):
                cells = (module, impl, question, ANSWER)
                row = re.compile(" +".join(map(re.escape, cells)) + " +(yes|no) ")
                assert any(row.match(line) for line in lines), (module, impl, question)
    assert (
        "Both implementations send the LM the same messages, so a local server that caches the "
        "prompt answers the second one faster; the order alternates per question.\n"
    ) in out
    crash = "InjectedCrash('injected crash after the LM request of call 1')"
    assert f"re-run on dspy: {ANSWER} (served by dspy, fallback: NativeCrash: {crash})" in out
    assert "The module kept serving (the same actor)" in out
    assert "native circuit of Predict is open. The next call went straight to dspy" in out
    assert re.search(
        r"^module type +impl\. +calls +ok +failed +fallbacks +crashes +p50 +p90$", out, re.M
    )
    assert "Module actor restarts: none." in out
    assert re.search(r"^ChainOfThought +native +\d+ +\d+ +0 +0 +0 +\d", out, re.M)
    assert "The runtime shut down cleanly" in out


CELLS = [
    ["ChainOfThought", "native", "What is the freezing point of water in degrees Celsius?", ANSWER],
    ["Predict", "dspy", "What is the capital of France?", "[bold]not markup[/]"],
]


@pytest.mark.parametrize(
    ("width", "layout"),
    [(40, "records"), (60, "table"), (80, "table"), (120, "table"), (300, "table")],
)
def test_tables_on_a_terminal_of_any_width_keep_every_value(width: int, layout: str) -> None:
    buffer = StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    columns = ("module", "impl.", "question", "answer")
    print_table(console, "Title", columns, CELLS, wrap={"question", "answer"})
    out = buffer.getvalue()
    assert "…" not in out
    assert max(map(len, out.splitlines())) <= width
    if layout == "records":  # one line of "column: value" pairs per row, wrapped
        flowing = " ".join(out.split())
        for row in CELLS:
            assert "; ".join(f"{c}: {v}" for c, v in zip(columns, row, strict=True)) in flowing
    else:  # long cells wrapped in their columns: every character of every value is there
        assert re.search(r"^module +impl\. +question +answer", out, re.M)
        values = ["Title", *columns, *(value for row in CELLS for value in row)]
        assert not Counter(re.sub(r"\s", "", "".join(values))) - Counter(re.sub(r"\s", "", out))


def test_calculator_tool_evaluates_arithmetic_only() -> None:
    assert calculator("37 * 49") == "1813"
    assert calculator("(1 + 2) / 4") == "0.75"
    with pytest.raises(ValueError, match="not plain arithmetic"):
        calculator("__import__('os')")


def test_pull_runs_pip_again_when_a_download_breaks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Real pip, made to download (into a scratch target) from an index that does not
    answer: three tries, then a clear error."""
    import dspex.cli

    monkeypatch.setattr(dspex.cli, "_parts_installed", lambda model: False)
    pip_env = {
        "PIP_INDEX_URL": closed_port_url().removesuffix("/v1") + "/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_IGNORE_INSTALLED": "1",
        "PIP_TARGET": str(tmp_path),
    }
    for name, value in pip_env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["lm", "pull"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert result.output.count("pip failed; trying again") == 2
    assert "pip failed 3 times" in result.output
