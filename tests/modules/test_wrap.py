"""Module.wrap: a wrapped program's name in metrics and spans, and its demos in info()."""

from __future__ import annotations

from typing import Any

import dspy
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dspex
from dspex.errors import ConfigError
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM
from tests.conftest import METRICS
from tests.modules.programs import Shout


def calls_counted(operation: str) -> int:
    """The ``dspex.calls`` counter's total for ``operation``, as an OTel exporter reads it."""
    data = METRICS.get_metrics_data()
    return sum(
        int(point.value)
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "dspex.calls"
        for point in metric.data.data_points  # type: ignore[union-attr]
        if (point.attributes or {}).get("dspex.operation") == operation
    )


async def test_a_named_program_is_reported_under_its_name(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    before = calls_counted("qa")
    qa = await dspex.Module.wrap(Shout, lm=rt.lm, name="qa")
    assert (await qa(question="Capital of France?")).answer == "PARIS"
    report = await rt.metrics()
    assert report.modules["qa"]["dspy"].calls == 1
    assert "Module" not in report.modules
    routes = [s for s in spans.get_finished_spans() if s.name == "dspex.route"]
    # its predictor is a module actor of its own, reported by its path, within the program's
    assert [dict(s.attributes or {})["dspex.operation"] for s in routes] == ["qa.predict", "qa"]
    assert routes[0].context.trace_id == routes[1].context.trace_id  # one trace per call
    assert calls_counted("qa") == before + 1
    assert "qa" in repr(qa)


async def test_unnamed_programs_are_reported_as_module(rt: Runtime) -> None:
    shout = await dspex.Module.wrap(Shout, lm=rt.lm)
    await shout(question="q")
    assert (await rt.metrics()).modules["Module"]["dspy"].calls == 1


async def test_a_named_programs_restarts_are_reported_under_its_name(rt: Runtime) -> None:
    qa = await dspex.Module.wrap(Shout, lm=rt.lm, name="qa")
    rt.node.exit(qa.actor, "kill")  # its supervisor restarts it from the factory
    assert (await qa(question="q")).answer == "PARIS"
    assert (await rt.metrics()).restarts == {"qa": 1}


@pytest.mark.parametrize("name", ["", "  ", 42, b"qa"])
async def test_a_bad_name_is_a_config_error(rt: Runtime, name: Any) -> None:
    with pytest.raises(ConfigError, match="name must be a non-empty string"):
        await dspex.Module.wrap(Shout, lm=rt.lm, name=name)


@pytest.mark.parametrize("name", ["Predict", "predict", "chain_of_thought"])
async def test_a_module_types_name_is_refused(rt: Runtime, name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name!r} is a module type's name"):
        await dspex.Module.wrap(Shout, lm=rt.lm, name=name)


async def test_module_itself_is_a_fine_name(rt: Runtime) -> None:
    ref = await dspex.Module.wrap(Shout, lm=rt.lm, name="module")
    assert (await ref.info()).module_type == "Module"


async def test_info_counts_a_compiled_programs_demos(rt: Runtime, server: ScriptedLM) -> None:
    trainset = [
        dspy.Example(question="Capital of Italy?", answer="Rome").with_inputs("question"),
        dspy.Example(question="Capital of Spain?", answer="Madrid").with_inputs("question"),
        dspy.Example(question="Capital of Peru?", answer="Lima").with_inputs("question"),
    ]
    compiled = dspy.LabeledFewShot(k=2).compile(Shout(), trainset=trainset)
    qa = await dspex.Module.wrap(compiled, lm=rt.lm, name="qa")
    assert (await qa.info()).demos == 2
    await qa(question="q")
    sent = str(server.requests[-1].messages)
    assert sum(example.answer in sent for example in trainset) == 2  # the demos are sent


async def test_info_counts_demos_set_on_a_programs_predictors(rt: Runtime) -> None:
    def build() -> Shout:
        program = Shout()
        program.predict.demos = [dspy.Example(question="Capital of Italy?", answer="Rome")]
        return program

    qa = await dspex.Module.wrap(build, lm=rt.lm)
    assert (await qa.info()).demos == 1
