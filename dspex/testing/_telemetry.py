"""Capture dspex's spans in tests, and assertions that read well."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dspex.prediction import Prediction

if TYPE_CHECKING:
    from dspex.runtime import Runtime

_exporter: InMemorySpanExporter | None = None


class Telemetry:
    """The spans finished since the capture started (or since :meth:`clear`)."""

    def __init__(self, exporter: InMemorySpanExporter):
        self.exporter = exporter

    def clear(self) -> None:
        """Forget the spans captured so far."""
        self.exporter.clear()

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, optionally only those called ``name``."""
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def routes(self) -> list[dict[str, Any]]:
        """The attributes of every ``dspex.route`` span: one per module call."""
        return [dict(s.attributes or {}) for s in self.spans("dspex.route")]

    def fallbacks(self) -> int:
        """How many calls fell back to dspy."""
        return sum(1 for r in self.routes() if r.get("dspex.fallback"))

    def restarts(self, module_type: str | None = None) -> int:
        """How many module actors were restarted after crashing (``dspex.restart`` spans)."""
        return self._count("dspex.restart", module_type)

    def native_crashes(self, module_type: str | None = None) -> int:
        """How many calls crashed in native code (``dspex.native_crash`` spans)."""
        return self._count("dspex.native_crash", module_type)

    def _count(self, name: str, module_type: str | None) -> int:
        return sum(
            1
            for s in self.spans(name)
            if module_type is None or (s.attributes or {}).get("dspex.operation") == module_type
        )


def capture_telemetry() -> Telemetry:
    """Record dspex's spans in memory: installs the OpenTelemetry SDK if no SDK provider is
    set (it can be set only once per process), else adds an exporter to the one that is. The
    capture returned starts empty."""
    global _exporter
    if _exporter is None:
        _exporter = InMemorySpanExporter()
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
    _exporter.clear()
    return Telemetry(_exporter)


def assert_fell_back(prediction: Prediction, reason: str | None = None) -> None:
    """Assert the call was answered by dspy after native failed (with ``reason``'s error
    type, e.g. ``"ParseError"``, or ``"NativeCrash"`` for a crash in native code, when
    given)."""
    assert prediction.fallback, (
        f"expected a fallback, but {prediction.implementation} served it directly"
    )
    assert prediction.implementation == "dspy", prediction
    if reason is not None:
        got = prediction.fallback_reason or ""
        assert got.startswith(reason), f"expected a fallback after {reason}, got {got!r}"


async def assert_restarted(runtime: Runtime, module_type: str, times: int) -> None:
    """Assert that module actors of ``module_type`` were restarted ``times`` times after
    crashing (their own state broke; a crash in one call's native code restarts nothing: see
    :func:`assert_native_crashed`), as the router counted them."""
    got = (await runtime.metrics()).restarts.get(module_type, 0)
    assert got == times, f"expected {times} restarts of {module_type}, got {got}"


async def assert_native_crashed(runtime: Runtime, module_type: str, times: int) -> None:
    """Assert that ``times`` calls of ``module_type`` raised an unexpected exception in native
    code (each re-run on dspy when fallback is allowed), as the router counted them."""
    native = (await runtime.metrics()).modules.get(module_type, {}).get("native")
    got = native.crashes if native is not None else 0
    assert got == times, f"expected {times} native crashes of {module_type}, got {got}"
