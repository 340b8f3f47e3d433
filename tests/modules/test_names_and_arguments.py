"""Names and call arguments at the boundary: the seed design's spellings of module types and
implementations, unknown module types at run time, and the ``timeout`` of a call."""

from __future__ import annotations

import re
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.config import MODULE_TYPES, Config
from dspex.errors import ConfigError, InputError
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM


def route_spans(spans: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [dict(s.attributes or {}) for s in spans.get_finished_spans() if s.name == "dspex.route"]


@pytest.mark.parametrize(
    "config",
    [
        Config(module_overrides={"chain_of_thought": "python"}, adaptive={"explore_rate": 0.0}),  # type: ignore[dict-item, arg-type]
        Config.from_env(
            {
                "DSPEX_MODULE_OVERRIDES": "chain_of_thought=python",
                "DSPEX_ADAPTIVE_EXPLORE_RATE": "0",
            }
        ),
    ],
    ids=["keyword", "environment"],
)
async def test_seed_spellings_route_under_the_canonical_names(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    cot = await dspex.ChainOfThought.create("question -> answer")
    predict = await dspex.Predict.create("question -> answer")
    assert (await cot(question="q")).implementation == "dspy"
    assert (await predict(question="q")).implementation == "native"
    report = await rt.metrics()
    assert set(report.modules) == {"ChainOfThought", "Predict"}
    assert report.modules["ChainOfThought"]["dspy"].calls == 1
    assert "native" not in report.modules["ChainOfThought"]
    cot_route = route_spans(spans)[0]
    assert cot_route["dspex.operation"] == "ChainOfThought"
    assert cot_route["dspex.implementation"] == "dspy"
    assert cot_route["dspex.route.reason"] == "override"


async def test_configure_takes_seed_spellings_and_records_canonical_names(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    config = await rt.configure(module_overrides={"react": "python", "best_of_n": "dspy"})
    assert config.module_overrides == {"ReAct": "dspy", "BestOfN": "dspy"}
    (configure,) = [s for s in spans.get_finished_spans() if s.name == "dspex.configure"]
    assert dict(configure.attributes or {}) == {
        "dspex.config.module_overrides": "{'ReAct': 'dspy', 'BestOfN': 'dspy'}"
    }


async def test_configure_rejects_unknown_module_types_and_keys(rt: Runtime) -> None:
    before = rt.config
    with pytest.raises(ConfigError, match=f"unknown module type 'Chain'; known: {MODULE_TYPES[0]}"):
        await rt.configure(module_overrides={"Chain": "dspy"})
    with pytest.raises(ConfigError, match=r"rollout\['predict_typo'\]: unknown module type"):
        await rt.configure(rollout={"predict_typo": {"native_percent": 5}})
    with pytest.raises(ConfigError, match="'call_timout' \\(did you mean 'call_timeout'"):
        await rt.configure(call_timout=5)
    assert rt.config == before


async def test_python_names_the_dspy_implementation_when_forcing(rt: Runtime) -> None:
    predict = await dspex.Predict.create("question -> answer", implementation="python")
    assert predict.implementation == "dspy"
    assert (await predict(question="q")).implementation == "dspy"
    plain = await dspex.Predict.create("question -> answer")
    served = await plain.execute({"question": "q"}, implementation="python")
    assert served.implementation == "dspy"
    assert set((await rt.metrics()).modules["Predict"]) == {"dspy"}


@pytest.mark.parametrize("timeout", [0, -1, -0.5, True, False, "5", float("nan"), [1]])
async def test_a_timeout_that_is_no_positive_number_is_an_input_error(
    rt: Runtime, server: ScriptedLM, spans: InMemorySpanExporter, timeout: Any
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(
        InputError,
        match=f"timeout must be a number of seconds > 0.*; got {re.escape(repr(timeout))}$",
    ):
        await predict.execute({"question": "q"}, timeout=timeout)
    assert server.requests == []  # rejected before routing: no LM request, no route
    assert route_spans(spans) == []
    assert (await predict.execute({"question": "q"}, timeout=5)).answer == "Paris"
