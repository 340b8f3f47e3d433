"""Shared fixtures: a running Runtime or a bare actor Node per test, and a guard that no task
outlives its test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

# DSPy's litellm must never try to fetch its model cost map: the suite runs offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dspex.actors import Node
from dspex.runtime import Runtime

# The OpenTelemetry SDK, as an app would install it: spans and metrics kept in memory.
SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The spans finished during the test (the exporter is cleared first)."""
    SPANS.clear()
    return SPANS


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    """A running Runtime; on teardown it is shut down and no actor task may be left."""
    before = asyncio.all_tasks()
    async with Runtime() as rt:
        yield rt
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    left.discard(asyncio.current_task())  # type: ignore[arg-type]
    assert not left, f"tasks left running after shutdown: {left}"


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    """A bare actor Node on the test's loop (no dspex runtime); on teardown every actor left is
    stopped and no task may be left."""
    before = asyncio.all_tasks()
    node = Node()
    yield node
    await node.stop_all(5.0)
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    left.discard(asyncio.current_task())  # type: ignore[arg-type]
    assert not left, f"tasks left running after the node stopped: {left}"
