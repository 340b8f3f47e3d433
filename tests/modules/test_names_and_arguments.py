"""Names and call arguments at the boundary: the seed design's spellings of module types and
implementations, unknown module types at run time, and a call's own arguments (``timeout``,
``temperature``, ``max_tokens``, ``n``, ``key``): a bad one is the caller's InputError, raised
before routing, so it never crashes an actor or moves a circuit."""

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
    # what the runtime read as it started cannot change under it, and says so
    with pytest.raises(ConfigError, match=r"dspy_workers, workers cannot change at run time"):
        await rt.configure(dspy_workers=7, workers={"grace": 9.0})
    assert (await rt.configure(dspy_workers=rt.config.dspy_workers)) == before  # unchanged: fine
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


@pytest.mark.parametrize(
    ("argument", "value", "allowed"),
    [
        ("temperature", "hot", "temperature must be a number from 0 to 2"),
        ("temperature", -0.1, "temperature must be a number from 0 to 2"),
        ("temperature", 2.5, "temperature must be a number from 0 to 2"),
        ("temperature", float("nan"), "temperature must be a number from 0 to 2"),
        ("temperature", True, "temperature must be a number from 0 to 2"),
        ("max_tokens", 0, "max_tokens must be an int >= 1"),
        ("max_tokens", 1.5, "max_tokens must be an int >= 1"),
        ("max_tokens", "100", "max_tokens must be an int >= 1"),
        ("max_tokens", True, "max_tokens must be an int >= 1"),
        ("n", "2", "n must be an int >= 1"),
        ("n", 0, "n must be an int >= 1"),
        ("n", 2.0, "n must be an int >= 1"),
        ("key", 1.5, "key must be a str or an int"),
        ("key", ["user-1"], "key must be a str or an int"),
        ("key", True, "key must be a str or an int"),
    ],
)
async def test_a_bad_call_argument_is_an_input_error_that_moves_nothing(
    rt: Runtime,
    server: ScriptedLM,
    spans: InMemorySpanExporter,
    argument: str,
    value: Any,
    allowed: str,
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    actor = predict.actor
    for _ in range(5):  # more than the crashes that used to open the native circuit
        with pytest.raises(InputError, match=f"^{allowed}.*; got {re.escape(repr(value))}$"):
            await predict.execute({"question": "q"}, **{argument: value})
    assert server.requests == []  # rejected before routing: no LM request, no route
    assert route_spans(spans) == []
    report = await rt.metrics()
    assert (report.modules, report.circuits, report.restarts) == ({}, {}, {})
    assert predict.actor is actor  # never crashed
    assert (await predict.execute({"question": "q"})).answer == "Paris"


@pytest.mark.parametrize("implementation", ["native", "dspy"])
async def test_lm_overrides_at_their_bounds_reach_the_lm(
    rt: Runtime, server: ScriptedLM, implementation: str
) -> None:
    predict = await dspex.Predict.create("question -> answer", implementation=implementation)
    for temperature in (0, 2):
        await predict.execute({"question": "q"}, temperature=temperature, max_tokens=1, n=1)
        body = server.requests[-1].body or {}
        assert (body["temperature"], body["max_tokens"], body["n"]) == (temperature, 1, 1)


@pytest.mark.parametrize(
    "config",
    [Config(rollout={"Predict": {"native_percent": 50}}, adaptive={"explore_rate": 0.0})],
)
async def test_an_int_key_is_the_same_rollout_key_as_its_string(rt: Runtime) -> None:
    predict = await dspex.Predict.create("question -> answer")
    served = {}
    for user in range(20):
        by_int = await predict.execute({"question": "q"}, key=user)
        by_str = await predict.execute({"question": "q"}, key=str(user))
        assert by_int.implementation == by_str.implementation
        served[user] = by_int.implementation
    assert set(served.values()) == {"native", "dspy"}  # the key decides, half and half
