"""A FastAPI service answering questions with dspex, with metrics for Prometheus.

Run it from the repository's root, after ``pip install "dspex[web]"``::

    uvicorn examples.fastapi_app:app          # or: python examples/fastapi_app.py

    curl -s localhost:8000/qa -H 'content-type: application/json' \\
        -d '{"question": "What is the capital of France?"}'
    curl -sN localhost:8000/qa/stream -H 'content-type: application/json' \\
        -d '{"question": "What is the capital of France?"}'   # server-sent events
    curl -s localhost:8000/metrics            # Prometheus text: dspex_calls_total, ...
    curl -s localhost:8000/stats              # the router's metrics and the module's load (JSON)

The LM is ``EXAMPLE_LM_URL`` (an OpenAI-compatible base URL, e.g. the one ``dspex lm
serve`` prints) serving ``EXAMPLE_LM_MODEL`` (default ``local``) with the API key
``EXAMPLE_LM_KEY`` (default ``none``); without a URL it is the embedded model (which needs
``pip install "dspex[local]"`` and ``dspex lm pull``). dspex's settings come from ``DSPEX_*``
variables, e.g. ``DSPEX_DRAIN_TIMEOUT=5``, or ``DSPEX_PRELOAD_DSPY=true`` so that no request
waits for DSPy's import (the first one routed to the dspy implementation would).

On SIGTERM or Ctrl+C dspex stops taking calls and drains the ones in flight while uvicorn stops
accepting connections and waits for the requests it is serving: each gets its answer, or a 503
if it came after the signal or was still running at the end of the drain; then uvicorn exits
(``python examples/fastapi_app.py`` with status 0).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

import dspex
from dspex.lm import LocalLM

# dspex records its metrics through the OpenTelemetry API; this SDK provider hands them to
# prometheus_client's default registry, which GET /metrics renders.
metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))


def example_lm() -> dspex.LM | LocalLM:
    """The LM the environment names (see the module's docstring)."""
    url = os.environ.get("EXAMPLE_LM_URL")
    if not url:
        return dspex.LM.local()
    model = os.environ.get("EXAMPLE_LM_MODEL", "local")
    key = os.environ.get("EXAMPLE_LM_KEY", "none")
    return dspex.LM(f"openai/{model}", api_base=url, api_key=key)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with dspex.Runtime(lm=example_lm()) as runtime:
        runtime.stop_on_signals()  # drain on SIGTERM; uvicorn's own handler runs too
        app.state.runtime = runtime
        app.state.qa = await dspex.Predict.create("question -> answer")
        yield


app = FastAPI(title="dspex question answering", lifespan=lifespan)


class Question(BaseModel):
    question: str


class Answer(BaseModel):
    answer: str
    implementation: str
    fallback: bool


@app.post("/qa")
async def qa(body: Question, request: Request) -> Answer:
    """Answer one question; the reply says which implementation served it."""
    prediction = await request.app.state.qa(question=body.question)
    return Answer(
        answer=prediction.answer,
        implementation=prediction.implementation,
        fallback=prediction.fallback,
    )


@app.post("/qa/stream")
async def qa_stream(body: Question, request: Request) -> StreamingResponse:
    """Answer one question as server-sent events: a ``chunk`` event for each piece of an output
    field as the LM writes it (``{"predictor", "field", "chunk", "is_last"}``), a ``status``
    event for each status message, then the ``prediction`` (its fields, ``implementation`` and
    ``fallback``). A call refused before it starts (e.g. while draining) gets the HTTP status
    ``/qa`` would; one that fails later ends the stream with an ``error`` event (``{"error",
    "detail", "status"}``, that status). A client that hangs up cancels the call and its LM
    request."""
    stream = request.app.state.qa.stream({"question": body.question})  # raises if refused
    return StreamingResponse(
        server_sent_events(stream, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: ``data`` as JSON (on one line)."""
    return b"event: %s\ndata: %s\n\n" % (event.encode(), msgspec.json.encode(data))


async def server_sent_events(stream: dspex.Stream, request: Request) -> AsyncIterator[bytes]:
    # Starlette cancels this generator when the client disconnects: leaving `async with`
    # then cancels the call.
    async with stream as events:
        try:
            async for event in events:
                if isinstance(event, dspex.StreamChunk):
                    yield sse("chunk", msgspec.structs.asdict(event))
                elif isinstance(event, dspex.StatusMessage):
                    yield sse("status", {"message": event.message})
                else:
                    served = {"implementation": event.implementation, "fallback": event.fallback}
                    yield sse("prediction", {**event.to_dict(), **served})
        except dspex.DSPexError as exc:
            status, _ = error_status(request, exc)
            error = {"error": type(exc).__name__, "detail": str(exc), "status": status}
            yield sse("error", error)


@app.get("/metrics")
def prometheus() -> Response:
    """dspex's OpenTelemetry metrics (calls, durations, fallbacks, restarts) for Prometheus."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """The router's live metrics and the module's description and load, as JSON."""
    state = request.app.state
    return {
        "metrics": (await state.runtime.metrics()).to_dict(),
        "qa": (await state.qa.info()).to_dict(),
    }


def error_status(request: Request, exc: Exception) -> tuple[int, dict[str, str] | None]:
    """dspex's errors as HTTP statuses (and headers): 503 (retry later) when the service is
    shutting down or at capacity, 422 for bad inputs, 504 past a deadline, 502 when the LM or
    module failed."""
    stopping = not request.app.state.runtime.accepting  # e.g. a call cut short by the drain
    if stopping or isinstance(exc, (dspex.Unavailable, dspex.Overloaded)):
        return 503, {"Retry-After": "1"}
    if isinstance(exc, dspex.InputError):
        return 422, None
    if isinstance(exc, dspex.Timeout):
        return 504, None
    return 502, None


@app.exception_handler(dspex.DSPexError)
async def dspex_error(request: Request, exc: Exception) -> JSONResponse:
    """A dspex error raised by an endpoint, as its HTTP status (see :func:`error_status`)."""
    status, headers = error_status(request, exc)
    body = {"error": type(exc).__name__, "detail": str(exc)}
    return JSONResponse(body, status_code=status, headers=headers)


def main() -> None:
    """Serve the app on ``EXAMPLE_HOST``:``EXAMPLE_PORT`` (default 127.0.0.1:8000; port 0 picks
    a free one); a graceful stop on SIGTERM or Ctrl+C exits with status 0."""
    import signal
    import sys

    import uvicorn

    # Once it has shut down, uvicorn raises again the signal that stopped it, under the handler
    # that was there before it started: this one, which makes that graceful stop exit 0. (The
    # `uvicorn` command keeps Python's default handler: the process ends killed by SIGTERM.)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host = os.environ.get("EXAMPLE_HOST", "127.0.0.1")
    uvicorn.run(app, host=host, port=int(os.environ.get("EXAMPLE_PORT", "8000")))


if __name__ == "__main__":
    main()
