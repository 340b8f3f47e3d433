"""dspex compare: agreement per field, accuracy, latency, errors and tokens, in a report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

import dspex
from dspex.cli._compare import (
    IMPL_COLUMNS,
    compare,
    compare_program,
    load_dataset,
    matches,
    write_report,
)
from dspex.errors import ConfigError, InputError
from dspex.lm import LM
from dspex.signature import Signature
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond
from tests.cli.conftest import closed_port_url, run_dspex
from tests.modules import corpus

EXAMPLES = Path(__file__).parents[2] / "examples" / "questions.jsonl"


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


async def test_compare_reports_agreement_and_accuracy(tmp_path: Path) -> None:
    # Odd rows run dspy first, so native gets the second answer there: B on 'diverge' rows.
    rows = [
        {"question": "one", "expected": "A"},
        {"question": "two diverge", "expected": "B"},  # native right, dspy wrong
        {"question": "three"},  # not scored
        {"question": "four diverge", "expected": "B"},  # native right, dspy wrong
    ]
    async with ScriptedLM(_diverging_second_request()) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
        async with dspex.Runtime(lm=lm):
            result = await compare(rows, Signature.parse("question -> answer"))
    assert result.rows == 4
    assert result.field_agreement == {"answer": 0.5}
    assert result.agreement == 0.5
    assert result.scored == 3
    assert result.accuracy == {"native": 1.0, "dspy": pytest.approx(1 / 3)}
    assert result.errors == {"native": 0, "dspy": 0}
    assert result.tokens["native"]["prompt"] > 0
    assert result.tokens["dspy"]["prompt"] == result.tokens["native"]["prompt"]
    report = tmp_path / "report.md"
    plot = write_report(result, report, "test")
    text = report.read_text()
    assert "| answer | 50.0% |" in text
    assert "| native | 100.0% |" in text
    assert "| dspy | 33.3% |" in text
    assert "the 3 rows with an expected value whose 'answer' contains" in text
    assert "## Rows that differ\n" in text
    assert plot is None or plot.exists()
    # Outputs are shown whole, and a long list of differing rows says where it stops.
    native, dspy_run = result.runs[1]
    long_answer = msgspec.structs.replace(native, output={"answer": "x" * 300})
    write_report(msgspec.structs.replace(result, runs=[[long_answer, dspy_run]] * 51), report, "t")
    text = report.read_text()
    assert "## Rows that differ (the first 50 of 51)\n" in text
    assert text.count('{"answer": "' + "x" * 300 + '"}') == 50


async def test_without_an_expected_column_there_is_no_accuracy() -> None:
    async with ScriptedLM(respond(answer="A")) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
        async with dspex.Runtime(lm=lm):
            result = await compare([{"question": "one"}], Signature.parse("question -> answer"))
    assert result.scored == 0
    assert result.accuracy is None


@pytest.mark.parametrize(
    ("output", "expected", "correct"),
    [
        ("Paris", "Paris", True),
        ("Paris, France.", "paris", True),
        ("The answer is 8 legs", 8, True),
        ("0°C", "0", True),
        ("William Shakespeare", "Shakespeare", True),
        ("new-york city", "New York", True),
        ("10", "0", False),
        ("Australia", "Au", False),
        ("York, New", "New York", False),
        ("anything", "", False),
        (None, "Paris", False),
    ],
)
def test_matches_looks_for_the_expected_words_in_order(
    output: object, expected: object, correct: bool
) -> None:
    assert matches(output, expected) is correct


def test_datasets_load_from_jsonl_and_csv(tmp_path: Path) -> None:
    assert load_dataset(EXAMPLES)[0] == {
        "question": "What is the capital of France?",
        "expected": "Paris",
    }
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
def test_compare_command_piped_prints_whole_rows_and_accuracy(
    scripted_url: str, tmp_path: Path, suffix: str
) -> None:
    report = tmp_path / f"report{suffix}"
    done = run_dspex("compare", str(EXAMPLES), "--lm", scripted_url, "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "…" not in out
    assert "Agreement over 8 rows (native vs dspy)\n" in out
    assert re.search(r"^output field +agreement$", out, re.M)
    assert re.search(r"^answer +100\.0%$", out, re.M)
    assert re.search(r"^" + " +".join(map(re.escape, IMPL_COLUMNS)) + "$", out, re.M)
    # The scripted answer names Paris: right for the first of the 8 questions only.
    for impl in ("native", "dspy"):
        assert re.search(rf"^{impl} +12\.5% +\d+ +\d+ +\d+ +0 +\d+ +\d+$", out, re.M)
    assert "the 8 rows with an expected value whose 'answer' contains" in out
    text = report.read_text()
    assert "100.0%" in text
    if suffix == ".html":
        assert "<table>" in text
        assert "<td>native</td><td>12.5%</td>" in text
    else:
        assert re.search(r"^\| native \| 12\.5% \|", text, re.M)


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_compare_command_rejects_bad_arguments_whatever_the_width(tmp_path: Path) -> None:
    deep = tmp_path / ("a-directory-with-a-long-name-" * 8) / "none.jsonl"
    done = run_dspex("compare", str(deep), columns=40)
    assert done.returncode == 2
    assert f"Error: Invalid value: dataset {deep} does not exist\n" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--signature", "context, question -> answer"],
            "row 1 of the dataset lacks the column(s) context, input(s) of the signature "
            "'context, question -> answer'; the row has the columns: question, expected.",
        ),
        (["--signature", "question answer"], "a signature needs exactly one '->'"),
        (["--signature", "question ->"], "--signature needs an output field to compare"),
        (["--module", "ReAct"], "--module must be one of ['ChainOfThought', 'Predict']"),
        (["--report", "out.txt"], "--report must end in .md or .html, got out.txt"),
    ],
)
def test_compare_command_checks_its_inputs_before_running(
    tmp_path: Path, args: list[str], message: str
) -> None:
    rows = [{"question": "Why?", "expected": "Because"}]
    dataset = _write_jsonl(tmp_path / "rows.jsonl", rows)
    done = run_dspex("compare", str(dataset), "--lm", "http://127.0.0.1:9/v1", *args)
    assert done.returncode == 2
    error = done.stderr.splitlines()[-1]
    assert error.startswith("Error: Invalid value: ")
    assert message in error


def test_compare_against_an_endpoint_that_does_not_answer_says_how_to_start_one(
    tmp_path: Path,
) -> None:
    url = closed_port_url()
    report = tmp_path / "report.md"
    done = run_dspex("compare", str(EXAMPLES), "--lm", url, "--report", str(report))
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: the endpoint at {url} did not answer")
    assert "`dspex lm serve`" in done.stderr
    assert "--lm-model" not in done.stderr
    assert not report.exists()


def _saved_draft_refine(path: Path) -> Path:
    """DraftRefine's state, as DSPy saves it, with a demo on its refine predictor."""
    import dspy

    program = corpus.DraftRefine()
    program.refine.demos = [dspy.Example(question="Capital of Chad?", answer="N'Djamena")]
    program.save(str(path))
    return path


async def test_compare_a_program_with_its_saved_state(tmp_path: Path) -> None:
    state = _saved_draft_refine(tmp_path / "prog.json")
    rows = [
        {"question": "Capital of France?", "expected": "Paris", "id": "1"},  # id: not an input
        {"question": "Capital of Peru?", "expected": "Lima", "id": "2"},
    ]
    reply = respond(answer="Paris", reasoning="Known.")
    async with ScriptedLM(reply) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
        async with dspex.Runtime(lm=lm) as rt:
            result = await compare_program(rows, corpus.DraftRefine, state)
            report = (await rt.metrics()).modules
    assert result.rows == 2
    assert result.fields == ["answer"]
    assert result.agreement == 1.0
    assert result.errors == {"native": 0, "dspy": 0}
    assert result.accuracy == {"native": 0.5, "dspy": 0.5}
    # native: each predictor its own module actor; dspy: the whole program on DSPy
    assert set(report["Module.refine"]) == set(report["Module.draft.predict"]) == {"native"}
    assert set(report["Module"]) == {"dspy"}
    refines = [r for r in server.requests if "draft" in str(r.messages[-1]["content"])]
    assert len(refines) == 4  # a row's refine call on each side, with the saved demo
    assert all("N'Djamena" in str(r.messages) for r in refines)


def test_compare_command_with_a_program(scripted_url: str, tmp_path: Path) -> None:
    state = _saved_draft_refine(tmp_path / "prog.json")
    report = tmp_path / "report.md"
    done = run_dspex(
        "compare",
        str(EXAMPLES),
        "--program",
        "tests.modules.corpus:DraftRefine",
        "--state",
        str(state),
        "--lm",
        scripted_url,
        "--report",
        str(report),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Agreement over 8 rows (native vs dspy)\n" in done.stdout
    assert re.search(r"^answer +100\.0%$", done.stdout, re.M)
    for impl in ("native", "dspy"):
        assert re.search(rf"^{impl} +12\.5% +\d+ +\d+ +\d+ +0 +\d+ +\d+$", done.stdout, re.M)
    text = report.read_text()
    assert text.startswith("# program tests.modules.corpus:DraftRefine with prog.json: native vs")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--program", "tests.modules.corpus"], "--program must be module:name"),
        (["--program", "no_such_module:P"], "cannot import 'no_such_module'"),
        (["--program", "tests.modules.corpus:Nope"], "'tests.modules.corpus' has no 'Nope'"),
        (["--program", "tests.modules.corpus:DOCS"], "must name a dspy.Module class or a"),
        (
            ["--program", "tests.modules.corpus:DraftRefine", "--module", "Predict"],
            "--program compares a program: leave out --signature and --module",
        ),
        (["--state", "prog.json"], "--state goes with --program"),
        (
            ["--program", "tests.modules.corpus:DraftRefine", "--state", "missing.json"],
            "--state missing.json does not exist",
        ),
        (
            ["--program", "tests.modules.corpus:Summarize"],
            "row 1 of the dataset lacks the column(s) text, input(s) of the program "
            "tests.modules.corpus:Summarize; the row has the columns: question, expected.",
        ),
    ],
)
def test_compare_command_checks_a_program_before_running(
    tmp_path: Path, args: list[str], message: str
) -> None:
    dataset = _write_jsonl(tmp_path / "rows.jsonl", [{"question": "Why?", "expected": "B"}])
    done = run_dspex("compare", str(dataset), "--lm", "http://127.0.0.1:9/v1", *args)
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("Error: Invalid value: ")
    assert message in error
