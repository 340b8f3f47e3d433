"""OpenTelemetry names: the tracer, the meter, instruments and attribute keys dspex uses.

dspex uses only the OpenTelemetry API; an app (or a test) installs the SDK. With no SDK the
API's no-op implementations cost well under a microsecond per span. No API key, and no prompt
or completion content, is ever put in a span or metric.
"""

from __future__ import annotations

from opentelemetry import metrics, trace

from dspex._version import __version__

tracer = trace.get_tracer("dspex", __version__)
meter = metrics.get_meter("dspex", __version__)

calls = meter.create_counter(
    "dspex.calls", unit="{call}", description="Module calls, by module type and implementation"
)
call_duration = meter.create_histogram(
    "dspex.call.duration", unit="s", description="Duration of module calls"
)
fallbacks = meter.create_counter(
    "dspex.fallbacks", unit="{call}", description="Calls re-run on dspy after native failed"
)
restarts = meter.create_counter(
    "dspex.restarts", unit="{restart}", description="Module actor restarts after a crash"
)
native_crashes = meter.create_counter(
    "dspex.native_crashes",
    unit="{call}",
    description="Calls whose native code raised an unexpected exception (re-run on dspy)",
)
cache_hits = meter.create_counter(
    "dspex.cache.hits", unit="{request}", description="LM requests answered from the cache"
)
cache_misses = meter.create_counter(
    "dspex.cache.misses", unit="{request}", description="LM requests the cache could not answer"
)

# Attribute keys of the route decision (the original design's metadata) and of outcomes.
OPERATION = "dspex.operation"
IMPLEMENTATION = "dspex.implementation"
NATIVE_AVAILABLE = "dspex.native_available"
ROUTE_REASON = "dspex.route.reason"
FALLBACK = "dspex.fallback"
FALLBACK_REASON = "dspex.fallback.reason"
MODULE_ID = "dspex.module.id"
OUTCOME = "dspex.outcome"
CIRCUIT_STATE = "dspex.circuit.state"
CACHE_HIT = "dspex.cache.hit"
CACHE_HITS = "dspex.cache.hits"

# OpenTelemetry GenAI semantic conventions for LM calls.
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
