"""examples/fastapi_app.py under a real uvicorn process: answers, metrics, and a SIGTERM with
200 requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from dspex.testing import Hang, RecordedRequest, Reply, ScriptedLM, respond
from tests.helpers import Output

ROOT = Path(__file__).resolve().parents[2]  # where examples/ is
DRAIN = 2.0  # the server's DSPEX_DRAIN_TIMEOUT
REQUESTS = 200
HUNG = 10  # requests the LM never answers: the end of the drain cuts them short
ANSWER = respond(answer="Paris")


#: The two ways the example's docstring gives to run it: the uvicorn command, and the script.
UVICORN_COMMAND = (
    *("-m", "uvicorn", "examples.fastapi_app:app", "--app-dir", str(ROOT)),
    *("--host", "127.0.0.1", "--port", "0", "--no-access-log"),
)
SCRIPT = (str(ROOT / "examples" / "fastapi_app.py"),)


@contextlib.asynccontextmanager
async def serving(lm: ScriptedLM, command: tuple[str, ...]) -> AsyncIterator[tuple[Output, str]]:
    """The example run by ``command`` on a free port with ``lm`` as its LM, once it serves:
    its output and its URL."""
    env = {
        **os.environ,
        "EXAMPLE_LM_URL": lm.base_url,
        "EXAMPLE_LM_MODEL": "scripted",
        "EXAMPLE_PORT": "0",
        "DSPEX_DRAIN_TIMEOUT": str(DRAIN),
        # calls routed to dspy do not wait for DSPy's import (seconds): every one can drain
        "DSPEX_PRELOAD_DSPY": "true",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        cwd=ROOT.parent,  # anywhere but the repository: the script finds its own way
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with Output(proc) as output:
        started = await output.wait_for(r"Uvicorn running on (http://\S+) ")
        yield output, started.group(1)


async def ask(session: aiohttp.ClientSession, url: str, question: str) -> tuple[int, Any]:
    async with session.post(f"{url}/qa", json={"question": question}) as response:
        return response.status, await response.json()


async def get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_it_answers_and_exports_dspex_metrics_for_prometheus() -> None:
    async with (
        ScriptedLM(ANSWER) as lm,
        serving(lm, UVICORN_COMMAND) as (_, url),
        aiohttp.ClientSession() as session,
    ):
        status, body = await ask(session, url, "What is the capital of France?")
        async with session.get(f"{url}/metrics") as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/plain")
            prometheus = await response.text()
        stats = await get(session, f"{url}/stats")
    assert status == 200, body
    assert (body["answer"], body["fallback"]) == ("Paris", False)
    assert body["implementation"] in ("native", "dspy")
    assert "# TYPE dspex_calls_total counter" in prometheus
    counted = re.search(r"^dspex_calls_total\{(.*)\} (\S+)$", prometheus, re.MULTILINE)
    assert counted, prometheus
    assert 'dspex_operation="Predict"' in counted.group(1)
    assert 'dspex_outcome="ok"' in counted.group(1)
    assert float(counted.group(2)) == 1.0
    served = stats["metrics"]["modules"]["Predict"][body["implementation"]]
    assert (served["calls"], served["successes"]) == (1, 1)
    assert (stats["qa"]["module_type"], stats["qa"]["in_flight"]) == ("Predict", 0)


def gated(release: asyncio.Event) -> Any:
    """An LM script: "hang" questions get no answer, the others once ``release`` is set."""

    async def script(request: RecordedRequest) -> Reply | Hang:
        if "hang" in request.messages[-1]["content"]:
            return Hang()
        await release.wait()
        return ANSWER(request)

    return script


async def test_sigterm_with_requests_in_flight_answers_each_then_exits() -> None:
    release = asyncio.Event()
    questions = ["hang"] * HUNG + ["wait"] * (REQUESTS - HUNG)
    connector = aiohttp.TCPConnector(limit=0)  # every request on a connection of its own
    async with (
        ScriptedLM(gated(release)) as lm,
        serving(lm, SCRIPT) as (output, url),
        aiohttp.ClientSession(connector=connector) as session,
    ):
        calls = [asyncio.ensure_future(ask(session, url, q)) for q in questions]
        while (await get(session, f"{url}/stats"))["qa"]["in_flight"] < REQUESTS:
            assert not any(call.done() for call in calls), [c.result() for c in calls]
            await asyncio.sleep(0.05)
        output.proc.send_signal(signal.SIGTERM)
        await output.wait_for("signal received: draining")
        release.set()  # the calls in flight end while the runtime drains
        # exits after the drain: 2.3 s here alone; a loaded CI machine needs more than 1 s slack
        returncode = await asyncio.wait_for(output.proc.wait(), DRAIN + 3.0)
        results = await asyncio.gather(*calls)  # a reset connection would raise here
    hung, drained = results[:HUNG], results[HUNG:]
    assert all(status == 503 for status, _ in hung), hung  # cut short at the drain's end
    assert all(status == 200 and body["answer"] == "Paris" for status, body in drained), [
        result for result in drained if result[0] != 200
    ]
    assert "Application shutdown complete." in output.text, output.text
    assert "Traceback" not in output.text, output.text
    assert returncode == 0, output.text
