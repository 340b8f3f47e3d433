"""chaos(): a misbehaving LM script; inject_faults(): a misbehaving implementation."""

from __future__ import annotations

import pytest

import dspex
from dspex.errors import ConfigError, ScriptError
from dspex.lm import LM
from dspex.testing import (
    Drop,
    Hang,
    InjectedCrash,
    Malformed,
    Reply,
    ScriptedLM,
    Status,
    chaos,
    inject_faults,
    respond,
)
from dspex.testing._actions import RecordedRequest


def _request() -> RecordedRequest:
    return RecordedRequest(0, "POST", "/v1/chat/completions", {}, b"", {"messages": []}, 0, 0.0)


def test_chaos_injects_at_the_given_rates_and_replays_with_a_seed() -> None:
    def run(seed: int) -> list[str]:
        script = chaos("ok", error_rate=0.1, hang_rate=0.1, drop_rate=0.1, seed=seed)
        return [type(script(_request())).__name__ for _ in range(2000)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    for name in ("Status", "Hang", "Drop"):
        assert 150 < first.count(name) < 250
    assert first.count("str") == 2000 - sum(first.count(n) for n in ("Status", "Hang", "Drop"))


def test_chaos_counts_and_wraps_functions() -> None:
    script = chaos(respond(answer="x"), malformed_rate=0.5, unparsable_rate=0.5, seed=1)
    actions = [script(_request()) for _ in range(100)]
    assert all(isinstance(a, (Malformed, Reply)) for a in actions)
    assert script.counts["malformed"] + script.counts["unparsable"] == 100
    assert isinstance(chaos(Status(500))(_request()), Status)
    assert isinstance(chaos(Hang(), drop_rate=1.0)(_request()), Drop)


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"error_rate": 1.5}, r"error_rate must be in \[0, 1\]"),
        ({"hang_rate": 0.6, "drop_rate": 0.6}, "at most 1"),
    ],
)
def test_chaos_rejects_bad_rates(rates: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        chaos("ok", **rates)


def test_chaos_refuses_a_script_that_is_not_a_step() -> None:
    with pytest.raises(ScriptError, match=r"the script is \['ok'\]; expected a reply text"):
        chaos(["ok"], error_rate=0.1)  # type: ignore[arg-type]


async def test_inject_faults_by_schedule_rate_and_module_type() -> None:
    async with ScriptedLM(respond(answer="Paris", reasoning="r"), strict=False) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
        config = dspex.Config(allow_fallback=False, adaptive={"explore_rate": 0.0})  # type: ignore[arg-type]
        async with dspex.Runtime(lm=lm, config=config) as rt:
            predict = await dspex.Predict.create("question -> answer")
            cot = await dspex.ChainOfThought.create("question -> answer")
            with inject_faults(rt, fail_on={2}, module_types={"Predict"}) as faults:
                await cot(question="q")  # not counted: another module type
                await predict(question="q")  # call 1
                with pytest.raises(dspex.LMError, match="injected LM failure on call 2"):
                    await predict(question="q")
                assert faults.calls == 2
                assert faults.injected == {
                    "crash": 0,
                    "crash_after_request": 0,
                    "crash_actor": 0,
                    "fail": 1,
                    "hang": 0,
                }
            assert rt.backends["native"] is not faults  # removed
            seeded = [inject_faults(rt, crash_rate=0.5, seed=3) for _ in range(2)]
            rolls = [[s._pick(n) for n in range(1, 50)] for s in seeded]
            assert rolls[0] == rolls[1]
            for s in reversed(seeded):
                s.remove()
            with pytest.raises(ConfigError, match="crash_rate"):
                inject_faults(rt, crash_rate=2.0)
            assert InjectedCrash.__doc__
