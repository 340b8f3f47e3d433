"""The response cache through the public API: one reply per distinct request whichever
implementation asks (native, dspy in this process, dspy in a worker process), with the
defaults a new user has; single flight; the switches (``LM(cache=)``, ``cache=``,
``rollout_id=``, ``Config.cache``); no usage on a hit; counted in metrics and spans; the disk
cache across a restart; shadow runs and ``dspex compare`` answered by the LM, not the cache."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex import telemetry
from dspex.config import Config
from dspex.errors import ConfigError, InputError
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing import Reply, ScriptedLM, Status, respond
from tests.modules.programs import Shout

ANSWER = Reply("[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]", prompt_tokens=100)
NATIVE_ONLY = Config(adaptive={"explore_rate": 0.0})
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _lm(server: ScriptedLM, **settings: Any) -> LM:
    return LM("openai/gpt-4o-mini", api_base=server.base_url, api_key="k", **settings)


@pytest.mark.parametrize(
    ("first", "workers", "engine", "gzip"),
    [
        (first, workers, engine, gzip)
        for first in ("native", "dspy")
        for workers, engine, gzip in (
            (0, "auto", False),
            (1, "auto", False),
            (0, "litellm", False),
            (1, "litellm", False),
            (0, "litellm", True),
        )
    ],
)
async def test_either_implementation_answers_the_other_from_the_cache(
    first: str, workers: int, engine: Literal["auto", "litellm"], gzip: bool
) -> None:
    """The request each sends is the same bytes, so the second finds the first's reply: in
    this process and through a worker process (whose requests the service's cache answers),
    by DSPy's default engine (lm15) and by its LiteLLM engine. A compressed reply (OpenAI's
    servers gzip theirs; LiteLLM asks for it) is kept as the client reads it, not as the
    compressed bytes."""
    second = "dspy" if first == "native" else "native"
    config = Config(dspy_workers=workers, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM(ANSWER, strict=False, gzip=gzip) as server,
        Runtime(lm=_lm(server, dspy_engine=engine), config=config) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        one = await predict.execute({"question": "q"}, implementation=first)
        two = await predict.execute({"question": "q"}, implementation=second)
        three = await predict.execute({"question": "q"}, implementation=first)
        metrics = await rt.metrics()
    assert len(server.requests) == 1
    sent = server.requests[0].headers
    if gzip:
        assert "gzip" in sent["accept-encoding"]  # it went compressed
    if first == "dspy":  # by the engine the LM says
        assert sent["user-agent"].startswith("lm15/" if engine == "auto" else "DSPy/")
    assert one.answer == two.answer == three.answer == "Paris"
    assert (one.implementation, two.implementation) == (first, second)
    assert one.usage["prompt_tokens"] == 100
    assert two.usage == three.usage == NO_USAGE  # a hit reports no usage, on either side
    assert two.cost == three.cost == 0
    assert metrics.cache is not None
    assert (metrics.cache.hits, metrics.cache.misses, metrics.cache.entries) == (2, 1, 1)
    assert metrics.usage.prompt_tokens == 100  # only the request sent counts


@pytest.mark.parametrize("adapter", ["json", "xml"])
async def test_other_adapters_share_their_replies_too(adapter: str) -> None:
    """The JSON adapter's request carries a response_format: native's and LiteLLM's bodies
    are the same bytes there too."""
    config = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM(respond(answer="Paris", year=1889), strict=False) as server,
        Runtime(lm=_lm(server), config=config),
    ):
        predict = await dspex.Predict.create("question -> answer, year: int", adapter=adapter)
        one = await predict.execute({"question": "q"}, implementation="dspy")
        two = await predict.execute({"question": "q"}, implementation="native")
    assert len(server.requests) == 1
    assert one.to_dict() == two.to_dict() == {"answer": "Paris", "year": 1889}


async def test_50_identical_concurrent_calls_send_one_request_with_the_defaults() -> None:
    """Config() as a new user leaves it: adaptive routing sends some calls to dspy in worker
    processes; they wait for the one request in flight as the native calls do."""
    slow = Reply(ANSWER.text, latency=0.5)
    async with ScriptedLM(slow, strict=False) as server, Runtime(lm=_lm(server)) as rt:
        predict = await dspex.Predict.create("question -> answer")
        # dspy is loaded and explored: some of the calls below go to the worker processes
        await predict.execute({"question": "warm up"}, implementation="dspy")
        preds = await asyncio.gather(
            *(predict.execute({"question": "the same"}) for _ in range(50))
        )
        metrics = await rt.metrics()
    assert [p.answer for p in preds] == ["Paris"] * 50
    assert len(server.requests) == 2  # the warm-up's, and one for the 50
    assert metrics.cache is not None
    assert metrics.cache.hits == 49


async def test_identical_calls_in_flight_across_worker_processes_send_one_request() -> None:
    slow = Reply(ANSWER.text, latency=0.5)
    config = Config(dspy_workers=2, adaptive={"explore_rate": 0.0})
    async with ScriptedLM(slow, strict=False) as server, Runtime(lm=_lm(server), config=config):
        predict = await dspex.Predict.create("question -> answer")
        await predict.execute({"question": "warm up"}, implementation="dspy")
        calls = [
            predict.execute({"question": "same"}, implementation=("dspy", "native")[i % 2])
            for i in range(20)
        ]
        preds = await asyncio.gather(*calls)
    assert {p.answer for p in preds} == {"Paris"}
    assert {p.implementation for p in preds} == {"dspy", "native"}
    assert len(server.requests) == 2


@pytest.mark.parametrize("implementation", ["native", "dspy"])
async def test_a_failed_request_is_not_kept_and_its_waiters_send_their_own(
    implementation: str,
) -> None:
    """The first of two identical calls meets an HTTP 400 (no retry, no fallback): it fails
    alone; the one waiting for it sends its own request and gets the reply."""
    failing = Status(400, message="bad", latency=0.3)
    script = [failing, ANSWER]
    config = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM(script, strict=False) as server,
        Runtime(lm=_lm(server), config=config),
    ):
        predict = await dspex.Predict.create("question -> answer")
        first = asyncio.ensure_future(
            predict.execute({"question": "q"}, implementation=implementation)
        )
        await asyncio.sleep(0.1)
        second = await predict.execute({"question": "q"}, implementation=implementation)
        with pytest.raises(dspex.LMError):
            await first
    assert second.answer == "Paris"
    assert len(server.requests) == 2


@pytest.mark.parametrize("implementation", ["native", "dspy"])
async def test_the_switches_turn_it_off(implementation: str) -> None:
    """``LM(cache=False)`` (DSPy's ``dspy.LM(cache=False)`` too), a call's ``cache=False``,
    a call's ``rollout_id`` (its own entries), and ``Config(cache={"memory_mb": 0})``."""
    config = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})
    question = {"question": "q"}
    async with ScriptedLM(ANSWER, strict=False) as server:
        async with Runtime(lm=_lm(server, cache=False), config=config):
            predict = await dspex.Predict.create("question -> answer")
            for _ in range(2):
                await predict.execute(question, implementation=implementation)
        assert len(server.requests) == 2
        async with Runtime(lm=_lm(server), config=config):
            predict = await dspex.Predict.create("question -> answer")
            await predict.execute(question, implementation=implementation)
            await predict.execute(question, implementation=implementation, cache=False)
            assert len(server.requests) == 4
            await predict.execute(question, implementation=implementation, rollout_id=1)
            await predict.execute(question, implementation=implementation, rollout_id=1)
            await predict.execute(question, implementation=implementation, rollout_id=2)
            assert len(server.requests) == 6
            await predict.execute(question, implementation=implementation)
            assert len(server.requests) == 6
            # a request with a rollout id is sent as without one: DSPy does not send it
            assert server.requests[4].body == server.requests[3].body
        off = Config(dspy_workers=0, cache={"memory_mb": 0}, adaptive={"explore_rate": 0.0})
        async with Runtime(lm=_lm(server), config=off) as rt:
            predict = await dspex.Predict.create("question -> answer")
            for _ in range(2):
                await predict.execute(question, implementation=implementation)
            assert (await rt.metrics()).cache is None
        assert len(server.requests) == 8


def test_a_dspy_lm_brings_its_cache_setting() -> None:
    import dspy

    assert LM.from_dspy(dspy.LM("openai/m", cache=False)).cache is False
    assert LM.from_dspy(dspy.LM("openai/m")).cache is True
    assert LM("openai/m").to_dspy().cache is False  # DSPy's own cache stays off: dspex's answers


async def test_a_call_refuses_cache_options_it_cannot_use() -> None:
    async with ScriptedLM(ANSWER, strict=False) as server, Runtime(lm=_lm(server)):
        predict = await dspex.Predict.create("question -> answer")
        with pytest.raises(InputError, match="cache must be True, False or None"):
            await predict.execute({"question": "q"}, cache="no")  # type: ignore[arg-type]
        with pytest.raises(InputError, match="rollout_id must be an int"):
            await predict.execute({"question": "q"}, rollout_id="1")  # type: ignore[arg-type]
        with pytest.raises(dspex.ConfigError, match=r"LM\.cache"):
            _lm(server, cache="yes")
    assert server.requests == []


async def test_a_hit_is_a_span_attribute(spans: InMemorySpanExporter) -> None:
    """On native's LM call span (``dspex.cache.hit``); on dspy, which has no LM span, the
    call's span counts its hits (``dspex.cache.hits``): the module's execute span in this
    process, the worker's span in a worker process."""
    for workers in (0, 1):
        config = Config(dspy_workers=workers, adaptive={"explore_rate": 0.0})
        async with (
            ScriptedLM(ANSWER, strict=False) as server,
            Runtime(lm=_lm(server), config=config),
        ):
            predict = await dspex.Predict.create("question -> answer")
            for implementation in ("native", "native", "dspy"):
                await predict.execute({"question": "q"}, implementation=implementation)
        finished = spans.get_finished_spans()
        lm_spans = [s for s in finished if s.name.startswith("chat ")]
        assert [(s.attributes or {}).get(telemetry.CACHE_HIT) for s in lm_spans] == [False, True]
        where = "dspex.dspy.call" if workers else "dspex.module.execute"
        counted = [
            (s.attributes or {}).get(telemetry.CACHE_HITS) for s in finished if s.name == where
        ]
        assert counted[-1] == 1, (where, counted)
        spans.clear()


async def test_the_disk_cache_answers_after_a_restart(tmp_path: Path) -> None:
    """A restarted service (a new runtime on the same folder) sends nothing for a request
    answered before; on either implementation."""
    config = Config(dspy_workers=0, cache={"disk": str(tmp_path / "cache")})
    async with ScriptedLM(ANSWER, strict=False) as server:
        async with Runtime(lm=_lm(server), config=config):
            predict = await dspex.Predict.create("question -> answer")
            await predict.execute({"question": "q"}, implementation="native")
        async with Runtime(lm=_lm(server), config=config) as rt:
            predict = await dspex.Predict.create("question -> answer")
            again = await predict.execute({"question": "q"}, implementation="dspy")
            metrics = await rt.metrics()
    assert len(server.requests) == 1
    assert again.answer == "Paris"
    assert again.usage == NO_USAGE
    assert metrics.cache is not None
    assert metrics.cache.disk == str(tmp_path / "cache")


@pytest.mark.parametrize("damage", ["a file", "not a cache"])
async def test_a_disk_folder_that_cannot_hold_the_cache_is_a_config_error(
    tmp_path: Path, damage: str
) -> None:
    disk = tmp_path / "cache"
    if damage == "a file":
        disk.write_text("not a folder")
    else:
        disk.mkdir()
        (disk / "responses.sqlite3").write_bytes(b"garbage" * 1000)
    config = Config(dspy_workers=0, cache={"disk": str(disk)})
    with pytest.raises(ConfigError, match=re.escape(f"Config.cache.disk={str(disk)!r} cannot")):
        async with Runtime(config=config):
            pass


async def test_a_disk_that_fails_mid_run_is_a_miss_not_the_call_s_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged disk or a full one is the cache's trouble: the call is served on native as
    if it had missed, no fallback, no circuit moved; the memory cache still answers."""
    config = Config(
        dspy_workers=0, adaptive={"explore_rate": 0.0}, cache={"disk": str(tmp_path / "c")}
    )
    async with (
        ScriptedLM(ANSWER, strict=False) as server,
        Runtime(lm=_lm(server), config=config) as rt,
    ):
        assert rt.cache is not None
        assert rt.cache.disk is not None
        rt.cache.disk._db.close()  # every read and write of the file fails from now on
        predict = await dspex.Predict.create("question -> answer")
        first = await predict(question="q")
        second = await predict(question="q")
        metrics = await rt.metrics()
    assert (first.implementation, first.fallback, first.answer) == ("native", False, "Paris")
    assert (second.implementation, second.usage) == ("native", NO_USAGE)
    assert len(server.requests) == 1
    assert metrics.circuits == {}
    assert "could not read the disk cache" in caplog.text
    assert "could not write a reply to the disk cache" in caplog.text


async def test_a_shadow_run_asks_the_lm_not_the_cache() -> None:
    """Answered from the cache, the shadow would compare the primary's reply with itself."""
    config = Config(
        dspy_workers=0,
        adaptive={"explore_rate": 0.0},
        shadow={"Predict": {"rate": 1.0}},
    )
    async with ScriptedLM(ANSWER, strict=False) as server, Runtime(lm=_lm(server), config=config):
        predict = await dspex.Predict.create("question -> answer")
        await predict.execute({"question": "q"})
        for _ in range(100):
            if len(server.requests) == 2:
                break
            await asyncio.sleep(0.02)
    assert len(server.requests) == 2  # the primary's and the shadow's own


async def test_a_worker_that_dies_sending_a_request_does_not_hold_its_waiters() -> None:
    """A dspy worker claims a request and is killed while sending it: the native call waiting
    for that request sends its own instead of waiting for ever, and the dspy call is retried
    on a worker (as any call of a worker that died)."""
    import os
    import signal

    from tests.workers.support import until

    slow = Reply(ANSWER.text, latency=1.0)
    config = Config(dspy_workers=1, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM(slow, strict=False) as server,
        Runtime(lm=_lm(server), config=config) as rt,
    ):
        predict = await dspex.Predict.create("question -> answer")
        await predict.execute({"question": "warm up"}, implementation="dspy")
        dspy_call = asyncio.ensure_future(predict.execute({"question": "q"}, implementation="dspy"))
        await until(lambda: len(server.requests) == 2)  # the worker sends it
        native_call = asyncio.ensure_future(
            predict.execute({"question": "q"}, implementation="native")
        )
        await asyncio.sleep(0.1)
        assert not native_call.done()  # it waits for the worker's request
        slot = rt._worker_slots[0]
        assert slot.pid is not None
        os.kill(slot.pid, signal.SIGKILL)
        native = await asyncio.wait_for(native_call, 10)
        retried = await asyncio.wait_for(dspy_call, 30)
    assert native.answer == retried.answer == "Paris"
    assert native.usage["prompt_tokens"] > 0  # it sent its own request


async def test_a_fallback_asks_the_lm_again_and_keeps_the_new_reply() -> None:
    """Native cannot parse the reply: dspy's attempt does not get that same reply from the
    cache but a new one from the LM, which then replaces it there (the next call is a hit
    that parses)."""
    script = [Reply("no fields here"), Reply("no fields here either"), ANSWER]
    config = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})
    async with ScriptedLM(script, strict=False) as server, Runtime(lm=_lm(server), config=config):
        predict = await dspex.Predict.create("question -> answer")
        for _ in range(2):  # the unparseable replies, kept, then hit (and decoded once)
            with pytest.raises(dspex.ParseError):
                await predict.execute({"question": "q"}, implementation="native")
        assert len(server.requests) == 2
        first = await predict(question="q")  # chat, then DSPy's JSON retry; then dspy
        assert (first.implementation, first.fallback, first.answer) == ("dspy", True, "Paris")
        sent = len(server.requests)
        again = await predict(question="q")
    assert (again.implementation, again.answer, again.usage) == ("native", "Paris", NO_USAGE)
    assert len(server.requests) == sent == 3


async def test_best_of_n_attempts_are_kept_apart_by_rollout_id() -> None:
    """As DSPy's BestOfN runs attempt i under rollout id start + i, each attempt is its own
    request (not the first attempt's reply three times), and an identical call later finds
    all three."""

    def reward(args: dict[str, Any], pred: Any) -> float:
        return 0.0

    config = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})
    async with ScriptedLM(ANSWER, strict=False) as server, Runtime(lm=_lm(server), config=config):
        best = await dspex.BestOfN.create(
            "question -> answer", N=3, reward_fn=reward, threshold=1.0
        )
        await best(question="q")
        assert len(server.requests) == 3
        await best(question="q")
        assert len(server.requests) == 3
        await best.execute({"question": "q"}, rollout_id=1)  # ids 1, 2, 3: one new request
        assert len(server.requests) == 4


@pytest.mark.parametrize("program_first", [True, False])
async def test_a_program_s_sync_calls_share_the_cache_too(program_first: bool) -> None:
    """A wrapped program whose forward is sync runs in a thread on DSPy, whose default engine
    sends by its sync transport: that one answers from the cache and keeps replies too (its
    predictor asks what a native Predict of the same signature asks)."""
    config = Config(dspy_workers=0, adaptive={"explore_rate": 0.0})
    async with (
        ScriptedLM(ANSWER, strict=False) as server,
        Runtime(lm=_lm(server), config=config) as rt,
    ):
        shout = await dspex.Module.wrap(Shout, lm=rt.lm, implementation="dspy")
        predict = await dspex.Predict.create("question -> answer", implementation="native")
        if program_first:
            program = await shout(question="q")
            native = await predict(question="q")
        else:
            native = await predict(question="q")
            program = await shout(question="q")
    assert (program.answer, native.answer) == ("PARIS", "Paris")
    assert len(server.requests) == 1
    if program_first:
        assert server.requests[0].headers["user-agent"].startswith("lm15/")
    assert (native if program_first else program).usage == NO_USAGE
