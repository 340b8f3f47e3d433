"""The "Migrate a DSPy program" guide (docs/migrate.md), run: its code is the files of
examples/migrate_program/, optimized in plain DSPy and served by dspex under a real uvicorn
process, against a scripted LM (no network, no API key)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import dspy

import dspex
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond
from tests.helpers import Output

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "migrate_program"
GUIDE = ROOT / "docs" / "migrate.md"
FILES = ("program.py", "optimize.py", "app.py")
MODEL = "openai/gpt-4o-mini"  # the model the example names; the scripted LM answers for it
CAPITALS = {"France": "Paris", "Italy": "Rome", "Peru": "Lima", "Japan": "Tokyo"}
QUESTION = "What is the capital of Japan?"


def knows_capitals(request: RecordedRequest) -> Reply:
    """An LM that answers with the capital of the country its last message names."""
    last = str(request.messages[-1]["content"])
    capital = next((c for country, c in CAPITALS.items() if country in last), "unknown")
    return respond(answer=capital, reasoning=f"The capital is {capital}.")(request)


def test_the_guide_shows_the_example_files_as_they_are() -> None:
    """What the test below runs is what the page shows, to the byte."""
    shown = dict(re.findall(r'```python title="([^"]+)"\n(.*?)```', GUIDE.read_text(), re.S))
    assert shown == {name: (EXAMPLE / name).read_text() for name in FILES}


async def run(*args: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def load_saved_program(path: Path) -> Any:
    """The example's DraftRefine with prog.json loaded, in plain DSPy."""
    spec = importlib.util.spec_from_file_location("migrate_program", EXAMPLE / "program.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    program = module.DraftRefine()
    program.load(str(path))
    return program


async def test_optimized_in_dspy_served_by_dspex_sends_what_dspy_sends(tmp_path: Path) -> None:
    async with ScriptedLM(knows_capitals) as lm:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": lm.base_url,  # read by DSPy (optimize.py) and dspex (app.py)
            "OPENAI_API_KEY": "test",
            "DSPY_CACHEDIR": str(tmp_path / "dspy_cache"),
            # Config() explores dspy on 5% of calls once DSPy is loaded (wrap loads it): the
            # one request asserted below must not be one of them
            "DSPEX_ADAPTIVE_EXPLORE_RATE": "0",
        }
        optimize = await run(str(EXAMPLE / "optimize.py"), cwd=tmp_path, env=env)
        printed, _ = await optimize.communicate()
        assert optimize.returncode == 0, printed.decode()
        assert (tmp_path / "prog.json").is_file()

        start = len(lm.requests)
        app = await run(
            *("-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLE)),
            *("--host", "127.0.0.1", "--port", "0", "--no-access-log"),
            cwd=tmp_path,  # where prog.json is
            env=env,
        )
        async with Output(app) as output:
            url = (await output.wait_for(r"Uvicorn running on (http://\S+) ")).group(1)
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{url}/qa", json={"question": QUESTION}) as response,
            ):
                status, body = response.status, await response.json()
            served = lm.requests[start:]
            app.send_signal(signal.SIGTERM)
            await output.wait_for("Application shutdown complete.")
            returncode = await app.wait()

        program = load_saved_program(tmp_path / "prog.json")
        oracle = dspex.LM(MODEL, api_base=lm.base_url, api_key="test").to_dspy()
        with dspy.context(lm=oracle, adapter=dspy.ChatAdapter()):
            expected = await asyncio.to_thread(program, question=QUESTION)
        sent_by_dspy = lm.requests[start + len(served) :]

    assert status == 200, body
    assert body == {"answer": "Tokyo", "implementation": "native"}
    assert expected.answer == "Tokyo"
    assert len(served) == len(sent_by_dspy) == 2  # draft, then refine
    for ours, theirs in zip(served, sent_by_dspy, strict=True):
        assert ours.messages == theirs.messages
        assert ours.content == theirs.content  # byte for byte
    drafted = str(served[0].messages)
    assert "What is the capital of France?" in drafted  # the optimized demos went out
    assert "Traceback" not in output.text, output.text
    # uvicorn raises SIGTERM again once it has shut down (docs/serving.md)
    assert returncode in (0, -signal.SIGTERM), output.text
