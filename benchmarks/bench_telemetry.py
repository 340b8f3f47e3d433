"""What OpenTelemetry costs a native call: without an SDK (the default) and with one.

    python benchmarks/bench_telemetry.py [--quick]

A native Predict call through the public API on an instant in-process LM, one at a time, timed
with dspex's telemetry as shipped and with it stubbed out (``dspex.telemetry``'s tracer and
instruments replaced by do-nothing stand-ins, the facade's ``otel_context.get_current()`` by a
constant), in interleaved rounds; the difference is what the spans and metrics cost. The LM
client's span (one per LM request; the instant LM has no client) is timed the same way on its
own and added. The OpenTelemetry SDK can be installed once per process, so there are two worker
processes:

- no SDK: the OpenTelemetry API's no-op (proxy) tracer and meter, as a service without an SDK
  runs dspex;
- SDK: ``dspex.testing.capture_telemetry()`` (TracerProvider, SimpleSpanProcessor,
  InMemorySpanExporter) and a MeterProvider with an InMemoryMetricReader.

Target: <= 2 us added per call without an SDK. With the SDK: reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import INPUTS, SIGNATURE, Row, dspex_runtime, quiet, report, run_json, sequential
from opentelemetry import trace
from opentelemetry.trace import SpanKind

import dspex
from dspex import telemetry
from dspex.modules import _facade


class _Instrument:
    def add(self, *args: Any, **kwargs: Any) -> None:
        return None

    record = add


class _Tracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        return trace.INVALID_SPAN  # a non-recording span: is_recording() False, end() a no-op


class _Context:
    @staticmethod
    def get_current() -> None:
        return None


@contextlib.contextmanager
def stubbed() -> Iterator[None]:
    """dspex's call path with its spans and metrics replaced by do-nothing stand-ins."""
    names = ("tracer", "calls", "call_duration", "fallbacks")
    saved = [getattr(telemetry, name) for name in names] + [_facade.otel_context]
    for name in names:
        setattr(telemetry, name, _Tracer() if name == "tracer" else _Instrument())
    _facade.otel_context = _Context  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, value in zip(names, saved, strict=False):
            setattr(telemetry, name, value)
        _facade.otel_context = saved[-1]


ATTRIBUTES = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "bench"}


def lm_client_span() -> None:
    """What LMClient.complete does with its span per request (dspex/lm/_client.py)."""
    span = telemetry.tracer.start_span("chat bench", kind=SpanKind.CLIENT, attributes=ATTRIBUTES)
    if span.is_recording():
        span.set_attributes({"gen_ai.response.model": "bench", "gen_ai.usage.input_tokens": 1})
    span.end()


def per_call_us(fn: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def install_sdk() -> Any:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from dspex.testing import capture_telemetry

    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return capture_telemetry()


async def worker(sdk: bool, requests: int, rounds: int) -> dict[str, float]:
    capture = install_sdk() if sdk else None
    best: dict[str, float] = {}
    async with dspex_runtime(callers=256) as rt:
        module = await dspex.Predict.create(SIGNATURE, implementation="native", runtime=rt)
        if capture is not None:
            capture.clear()
            await module(**INPUTS)
            best["spans per call"] = len(capture.spans())
        for _ in range(rounds):
            for mode in ("shipped", "stubbed"):
                with stubbed() if mode == "stubbed" else contextlib.nullcontext():
                    wall, _ = await sequential(lambda: module(**INPUTS), requests)
                    span = per_call_us(lm_client_span, requests)
                best[mode] = min(wall, best.get(mode, wall))
                best[f"{mode} lm span"] = min(span, best.get(f"{mode} lm span", span))
                if capture is not None:
                    capture.clear()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument("--worker", choices=("nosdk", "sdk"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    requests, rounds = (2000, 3) if args.quick else (5000, 7)
    if args.worker:
        quiet()
        print(json.dumps(asyncio.run(worker(args.worker == "sdk", requests, rounds))))
        return 0
    results = {mode: run_json([__file__, "--worker", mode]) for mode in ("nosdk", "sdk")}

    def added(result: dict[str, float]) -> float:
        spans = result["shipped lm span"] - result["stubbed lm span"]
        return result["shipped"] - result["stubbed"] + spans

    nosdk, sdk = results["nosdk"], results["sdk"]
    rows = [
        Row(
            "telemetry per call, no SDK (API no-op)",
            added(nosdk),
            "us",
            baseline=nosdk["stubbed"],
            baseline_name="call, telemetry stubbed",
            target="<= 2 us",
            ok=added(nosdk) <= 2,
            note="see benchmarks/README.md (telemetry)",
        ),
        Row(
            "telemetry per call, SDK + in-memory exporter",
            added(sdk),
            "us",
            baseline=sdk["stubbed"],
            baseline_name="call, telemetry stubbed",
            target="reported",
        ),
        Row(
            "spans per native call (+1 per LM request)",
            sdk["spans per call"],
            "",
            target="reported",
        ),
    ]
    return 0 if report("bench_telemetry", rows, {"workers": results}) else 1


if __name__ == "__main__":
    sys.exit(main())
