"""dspex compare: agreement per field, latency, errors and tokens, in a report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dspex
from dspex.cli._compare import compare, load_dataset, write_report
from dspex.errors import ConfigError, InputError
from dspex.lm import LM
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond
from tests.cli.test_cli import scripted_url  # noqa: F401  (the fixture)

ROOT = Path(__file__).parents[2]


def _diverging_second_request() -> object:
    """Answers every request for a row alike, except the second one for rows saying
    'diverge', which gets another answer: those rows disagree, whichever side ran first."""
    seen: dict[str, int] = {}

    def script(request: RecordedRequest) -> Reply:
        question = request.messages[-1]["content"]
        seen[question] = seen.get(question, 0) + 1
        answer = "B" if "diverge" in question and seen[question] == 2 else "A"
        return respond(answer=answer)(request)

    return script


async def test_compare_reports_the_expected_agreement(tmp_path: Path) -> None:
    rows = [{"question": q} for q in ("one", "two diverge", "three", "four diverge")]
    async with ScriptedLM(_diverging_second_request()) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
        async with dspex.Runtime(lm=lm):
            result = await compare(rows, "question -> answer")
    assert result.rows == 4
    assert result.field_agreement == {"answer": 0.5}
    assert result.agreement == 0.5
    assert result.errors == {"native": 0, "dspy": 0}
    assert result.tokens["native"]["prompt"] > 0
    assert result.tokens["dspy"]["prompt"] == result.tokens["native"]["prompt"]
    report = tmp_path / "report.md"
    plot = write_report(result, report, "test")
    text = report.read_text()
    assert "| answer | 50.0% |" in text
    assert "## Rows that differ" in text
    assert plot is None or plot.exists()


def test_datasets_load_from_jsonl_and_csv(tmp_path: Path) -> None:
    assert load_dataset(ROOT / "examples" / "questions.jsonl")[0]["question"].startswith("What")
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("question,expected\nWhy?,Because\n")
    assert load_dataset(csv_file) == [{"question": "Why?", "expected": "Because"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        load_dataset(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match=r"\.jsonl or \.csv"):
        load_dataset(csv_file.rename(tmp_path / "rows.txt"))


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_compare_command_end_to_end(scripted_url: str, tmp_path: Path, suffix: str) -> None:  # noqa: F811
    report = tmp_path / f"report{suffix}"
    command = [
        sys.executable,
        *("-m", "dspex.cli", "compare", str(ROOT / "examples" / "questions.jsonl")),
        *("--lm", scripted_url, "--report", str(report)),
    ]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Agreement over 8 rows" in done.stdout
    text = report.read_text()
    assert "100.0%" in text
    if suffix == ".html":
        assert "<table>" in text


def test_compare_command_rejects_bad_arguments(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "dspex.cli", "compare", str(tmp_path / "none.jsonl")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "does not exist" in done.stderr + done.stdout
