"""Span capture, readable assertions, and the pytest plugin's fixtures."""

from __future__ import annotations

import pytest

import dspex
from dspex.testing import (
    ScriptedLM,
    Telemetry,
    assert_fell_back,
    assert_native_crashed,
    assert_restarted,
    inject_faults,
    respond,
)


async def test_the_plugin_fixtures_give_a_runtime_on_a_scripted_lm(
    dspex_runtime: dspex.Runtime, dspex_lm: ScriptedLM, dspex_telemetry: Telemetry
) -> None:
    dspex_lm.script = respond(answer="Paris")
    predict = await dspex.Predict.create("question -> answer", implementation="native")
    assert (await predict(question="q")).answer == "Paris"
    (route,) = dspex_telemetry.routes()
    assert route["dspex.implementation"] == "native"
    assert dspex_telemetry.fallbacks() == 0


async def test_assertions_on_fallbacks_crashes_and_restarts(
    dspex_runtime: dspex.Runtime, dspex_lm: ScriptedLM, dspex_telemetry: Telemetry
) -> None:
    dspex_lm.script = respond(answer="Paris")
    predict = await dspex.Predict.create("question -> answer")
    with inject_faults(dspex_runtime, crash_on={1}, fail_on={2}, crash_actor_on={3}):
        crashed = await predict(question="q")  # crashed in native code: dspy answers
        fell = await predict(question="q")  # LM failure: dspy answers
        restarted = await predict(question="q")  # the actor crashed; the new one answers
    assert_fell_back(crashed, "NativeCrash")
    assert_fell_back(fell, "LMError")
    assert restarted.implementation == "native"
    await assert_native_crashed(dspex_runtime, "Predict", 2)
    await assert_restarted(dspex_runtime, "Predict", 1)
    assert dspex_telemetry.native_crashes("Predict") == 2
    assert dspex_telemetry.restarts("Predict") == 1
    assert dspex_telemetry.fallbacks() == 2
    with pytest.raises(AssertionError, match="expected 2 restarts of Predict, got 1"):
        await assert_restarted(dspex_runtime, "Predict", 2)
    with pytest.raises(AssertionError, match="expected 1 native crashes of Predict, got 2"):
        await assert_native_crashed(dspex_runtime, "Predict", 1)
    with pytest.raises(AssertionError, match="expected a fallback"):
        assert_fell_back(await predict(question="q"))
