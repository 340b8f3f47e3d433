"""Serving from web apps: Runtime.current() in request handlers, and stop_on_signals beside a
server's own signal handlers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from types import FrameType
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI

import dspex
from dspex.errors import DSPexError, Unavailable
from dspex.runtime import Runtime
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond
from tests.helpers import Output

ANSWER = respond(answer="Paris")
#: Seconds before a wait that should end at once fails the test (rather than hanging it).
GUARD = 10.0


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLM]:
    async with ScriptedLM(ANSWER) as lm:
        yield lm


def lm_of(server: ScriptedLM) -> dspex.LM:
    return dspex.LM("openai/scripted", api_base=server.base_url, api_key="test")


async def ask(url: str, question: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"question": question}) as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def get(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


# -- Runtime.current() in request handlers -----------------------------------------------------


async def test_a_fastapi_handler_finds_the_runtime_entered_in_the_lifespan(
    server: ScriptedLM,
) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with dspex.Runtime(lm=lm_of(server)) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/ask")
    async def handle_ask(body: dict[str, str]) -> dict[str, Any]:
        predict = await dspex.Predict.create("question -> answer")  # no runtime= given
        prediction = await predict(question=body["question"])
        return {
            "answer": prediction.answer,
            "implementation": prediction.implementation,
            "info": (await predict.info()).to_dict(),
        }

    @app.get("/metrics")
    async def handle_metrics() -> dict[str, Any]:
        return (await app.state.runtime.metrics()).to_dict()

    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.ensure_future(uv.serve())
    while not uv.started:  # the lifespan has run and the socket listens
        assert not serving.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    try:
        body = await ask(f"http://127.0.0.1:{port}/ask", "Capital of France?")
        assert body["answer"] == "Paris"
        info = body["info"]
        assert (info["module_type"], info["implementations"]) == ("Predict", ["native", "dspy"])
        metrics = await get(f"http://127.0.0.1:{port}/metrics")
        assert metrics["modules"]["Predict"][body["implementation"]]["calls"] == 1
    finally:
        uv.should_exit = True
        await serving
    assert app.state.runtime.state == "stopped"


RUNTIME = web.AppKey("runtime", Runtime)


async def test_an_aiohttp_handler_finds_the_runtime_of_its_cleanup_ctx(
    server: ScriptedLM,
) -> None:
    async def dspex_runtime(app: web.Application) -> AsyncIterator[None]:
        async with dspex.Runtime(lm=lm_of(server)) as runtime:
            app[RUNTIME] = runtime
            yield

    async def handle_ask(request: web.Request) -> web.Response:
        predict = await dspex.Predict.create("question -> answer")
        prediction = await predict(question=(await request.json())["question"])
        return web.json_response({"answer": prediction.answer})

    app = web.Application()
    app.cleanup_ctx.append(dspex_runtime)
    app.router.add_post("/ask", handle_ask)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        assert (await ask(f"http://127.0.0.1:{port}/ask", "q"))["answer"] == "Paris"
    finally:
        await runner.cleanup()
    assert app[RUNTIME].state == "stopped"


async def start_in_own_task(runtime: Runtime, until: asyncio.Event) -> asyncio.Task[None]:
    """Enter ``runtime`` in a task of its own (as a lifespan does), which stays in it until
    ``until`` is set; the caller's task does not inherit that task's context."""
    ready = asyncio.Event()

    async def enter() -> None:
        async with runtime:
            ready.set()
            await until.wait()

    task = asyncio.ensure_future(enter())
    await ready.wait()
    return task


async def test_a_task_that_did_not_inherit_the_context_finds_the_loops_runtime(
    server: ScriptedLM,
) -> None:
    done = asyncio.Event()
    runtime = Runtime(lm=lm_of(server))
    task = await start_in_own_task(runtime, done)
    try:
        assert Runtime.current() is runtime  # this task did not enter it
        predict = await dspex.Predict.create("question -> answer")
        assert (await predict(question="q")).answer == "Paris"
    finally:
        done.set()
        await task
    with pytest.raises(DSPexError, match=r"enter `async with dspex\.Runtime\(\)`.*runtime="):
        Runtime.current()  # stopped: no longer on the loop


async def test_two_runtimes_on_one_loop_need_runtime_given(server: ScriptedLM) -> None:
    done = asyncio.Event()
    first, second = Runtime(lm=lm_of(server)), Runtime(lm=lm_of(server))
    tasks = [await start_in_own_task(rt, done) for rt in (first, second)]
    try:
        with pytest.raises(DSPexError, match=r"2 dspex Runtimes are running on this event loop"):
            await dspex.Predict.create("question -> answer")
        with pytest.raises(DSPexError, match=r"pass runtime= to create\(\) or wrap\(\)"):
            Runtime.current()
        predict = await dspex.Predict.create("question -> answer", runtime=second)
        assert (await predict(question="q")).answer == "Paris"
        assert "Predict" in (await second.metrics()).modules
        assert "Predict" not in (await first.metrics()).modules
    finally:
        done.set()
        await asyncio.gather(*tasks)


async def test_the_entered_runtime_comes_first(server: ScriptedLM) -> None:
    done = asyncio.Event()
    other = Runtime(lm=lm_of(server))
    task = await start_in_own_task(other, done)
    try:
        async with Runtime(lm=lm_of(server)) as mine:
            assert Runtime.current() is mine  # two on the loop, but this task entered one
    finally:
        done.set()
        await task


async def test_create_in_a_runtime_that_is_not_running_is_refused(server: ScriptedLM) -> None:
    with pytest.raises(DSPexError, match="no dspex Runtime is running here"):
        await dspex.Predict.create("question -> answer")
    with pytest.raises(Unavailable, match="the runtime is stopped"):
        await dspex.Predict.create("question -> answer", runtime=Runtime(lm=lm_of(server)))
    with pytest.raises(dspex.ConfigError, match=r"runtime must be a dspex\.Runtime"):
        await dspex.Predict.create("question -> answer", runtime="default")  # type: ignore[arg-type]


# -- stop_on_signals beside the handlers installed before ---------------------------------------


def gated(release: asyncio.Event) -> Callable[[RecordedRequest], Awaitable[Reply]]:
    """A script that answers once ``release`` is set, so a call is surely in flight."""

    async def script(request: RecordedRequest) -> Reply:
        await release.wait()
        return ANSWER(request)

    return script


async def signal_while_in_flight(server: ScriptedLM, previous_called: asyncio.Event) -> None:
    """Start a call, send SIGTERM, check that the handler from before was called at once, once
    dspex stopped taking calls but before the call in flight ended, and that the call drains."""
    release = asyncio.Event()
    server.script = gated(release)
    runtime = Runtime(lm=lm_of(server))
    await runtime.__aenter__()
    try:
        stopped = runtime.stop_on_signals()
        assert runtime.stop_on_signals() is stopped
        predict = await dspex.Predict.create("question -> answer", implementation="native")
        call = asyncio.ensure_future(predict(question="q"))
        await server.wait_for_requests(1)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(previous_called.wait(), GUARD)
        assert runtime.state == "draining"
        with pytest.raises(Unavailable):
            await predict(question="after the signal")
        assert not call.done()
        release.set()
        await asyncio.wait_for(stopped.wait(), GUARD)
        assert (await call).answer == "Paris"  # drained, not cancelled
    finally:
        await runtime.shutdown()


async def test_a_python_level_handler_is_called_and_put_back(server: ScriptedLM) -> None:
    called = asyncio.Event()
    received: list[int] = []

    def handler(sig: int, frame: FrameType | None) -> None:  # as uvicorn installs its own
        received.append(sig)
        called.set()

    before = signal.signal(signal.SIGTERM, handler)
    try:
        await signal_while_in_flight(server, called)
        assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_a_loop_handler_is_called_and_put_back(server: ScriptedLM) -> None:
    loop = asyncio.get_running_loop()
    called = asyncio.Event()
    received: list[str] = []

    def handler(tag: str) -> None:  # as aiohttp's run_app installs its own
        received.append(tag)
        called.set()

    loop.add_signal_handler(signal.SIGTERM, handler, "aiohttp")
    try:
        await signal_while_in_flight(server, called)
        assert received == ["aiohttp"]
        called.clear()
        os.kill(os.getpid(), signal.SIGTERM)  # the runtime has stopped: its handler is back
        await asyncio.wait_for(called.wait(), GUARD)
        assert received == ["aiohttp", "aiohttp"]
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def test_pythons_default_handler_is_put_back_but_not_called(server: ScriptedLM) -> None:
    before = signal.getsignal(signal.SIGINT)  # Python's, or asyncio.Runner's: neither is called
    async with Runtime(lm=lm_of(server)) as runtime:
        stopped = runtime.stop_on_signals()
        predict = await dspex.Predict.create("question -> answer", implementation="native")
        call = asyncio.ensure_future(predict(question="q"))
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt, no cancelled test task
        await asyncio.wait_for(stopped.wait(), GUARD)
        assert (await call).answer == "Paris"
    assert signal.getsignal(signal.SIGINT) == before


async def test_handlers_are_put_back_when_the_runtime_stops_without_a_signal(
    server: ScriptedLM,
) -> None:
    def handler(sig: int, frame: FrameType | None) -> None:
        raise AssertionError("not called: no signal was sent")

    before = signal.signal(signal.SIGTERM, handler)
    try:
        async with Runtime(lm=lm_of(server)) as runtime:
            stopped = runtime.stop_on_signals()
            assert signal.getsignal(signal.SIGTERM) is not handler
        assert stopped.is_set()
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)


AIOHTTP_APP = """
import os
import dspex
from aiohttp import web


async def dspex_runtime(app):
    lm = dspex.LM("openai/scripted", api_base=os.environ["LM_URL"], api_key="test")
    async with dspex.Runtime(lm=lm) as runtime:
        runtime.stop_on_signals()
        yield


async def ask(request):
    predict = await dspex.Predict.create("question -> answer", implementation="native")
    return web.json_response({"answer": (await predict(question="q")).answer})


app = web.Application()
app.cleanup_ctx.append(dspex_runtime)
app.router.add_post("/ask", ask)
web.run_app(app, host="127.0.0.1", port=0)
print("run_app returned", flush=True)
"""


async def test_aiohttp_run_app_drains_then_exits_on_sigterm(server: ScriptedLM) -> None:
    release = asyncio.Event()
    server.script = gated(release)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-u", "-c", AIOHTTP_APP),
        env={**os.environ, "LM_URL": server.base_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with Output(proc) as output, aiohttp.ClientSession() as session:
        url = (await output.wait_for(r"Running on (http://\S+) "))[1]
        call = asyncio.ensure_future(session.post(f"{url}/ask"))
        await asyncio.wait_for(server.wait_for_requests(1), GUARD)
        proc.send_signal(signal.SIGTERM)  # run_app's handler: ends serving (GracefulExit)
        await asyncio.wait_for(output.wait_for("signal received: draining"), GUARD)
        release.set()
        # without dspex calling run_app's handler, the app would serve on (and 503) forever
        assert await asyncio.wait_for(proc.wait(), GUARD) == 0, output.text
        async with await call as response:
            assert (response.status, await response.json()) == (200, {"answer": "Paris"})
    assert "run_app returned" in output.text, output.text
