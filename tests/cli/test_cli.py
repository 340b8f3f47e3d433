"""The dspex command without the model: arguments, errors, and the demo on a scripted LM."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from dspex.cli import app
from dspex.cli._demo import calculator
from dspex.lm import _local

runner = CliRunner()

# One reply that satisfies Predict, ChainOfThought and a ReAct step that finishes at once.
REPLY = (
    "[[ ## reasoning ## ]]\nIt is well known.\n\n[[ ## answer ## ]]\nParis\n\n"
    "[[ ## next_thought ## ]]\nI can answer.\n\n[[ ## next_tool_name ## ]]\nfinish\n\n"
    "[[ ## next_tool_args ## ]]\n{}\n\n[[ ## completed ## ]]"
)


@pytest.fixture(scope="module")
def scripted_url() -> Iterator[str]:
    command = [sys.executable, "-m", "dspex.testing", "serve", "--reply", REPLY]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    yield server.stdout.readline().strip()
    server.terminate()
    server.wait()


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
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args", [[], ["demo"], ["lm"], ["lm", "pull"], ["lm", "serve"], ["lm", "status"]]
)
def test_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_lm_status_reports_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_local, "server_available", lambda: False)
    monkeypatch.setattr("dspex.cli.server_available", lambda: False)
    result = runner.invoke(app, ["lm", "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "qwen2.5-coder-1.5b" in result.output
    assert 'pip install "dspex[local]"' in result.output


def test_demo_against_an_unreachable_endpoint_fails_clearly() -> None:
    result = runner.invoke(app, ["demo", "--lm", "http://127.0.0.1:9/v1"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "cannot list the models at http://127.0.0.1:9/v1" in " ".join(result.output.split())


def test_demo_runs_end_to_end_on_a_scripted_lm(scripted_url: str) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-m", "dspex.cli", "demo", "--lm", scripted_url, "-n", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Predict" in out
    assert "ChainOfThought" in out
    assert "restarted it as" in out
    assert "fell back to dspy" in out
    assert "native circuit of Predict is open" in out
    assert "each was retried on dspy" in out
    assert "Router metrics" in out
    assert "The runtime shut down cleanly" in out


def test_calculator_tool_evaluates_arithmetic_only() -> None:
    assert calculator("37 * 49") == "1813"
    assert calculator("(1 + 2) / 4") == "0.75"
    with pytest.raises(ValueError, match="not plain arithmetic"):
        calculator("__import__('os')")
