"""Streaming: time to the first chunk and overhead per chunk, beside a raw aiohttp SSE reader.

    python benchmarks/bench_stream.py [--quick] [--streams N] [--concurrency C] [--rounds R]
                                      [--chars N] [--chunk-size K] [--chunk-delay S] [--in-process]

A ScriptedLM in its own process (``--in-process``: in this one, on the same event loop) streams
one ChatAdapter reply to every request, ``"[[ ## answer ## ]]\\n" + <--chars of text> +
"\\n\\n[[ ## completed ## ]]"``, as server-sent events of ``--chunk-size`` characters each,
``--chunk-delay`` seconds apart (default 0: all at once, a burst, the hardest case for handing
chunks from one task to another; a real LM sends a delta at a time). Two contenders, in one
process, alternating:

- raw: an ``aiohttp.ClientSession`` POSTs the exact request body dspex sends for the stream
  (recorded once by a ScriptedLM; ``"stream": true`` and ``stream_options`` included) and reads
  the events line by line (``async for line in response.content``, as dspex's client does),
  decoding each ``data:`` line with ``msgspec.json.decode`` until ``[DONE]``;
- dspex: ``async for event in predict.stream({"question": ...}, implementation="native")`` on a
  ``dspex.Predict("question -> answer")``, to its final Prediction.

Time to the first chunk (TTFC), like for like: dspex can only send the answer's first chunk once
the header ``[[ ## answer ## ]]`` and a non-blank character after it have arrived, which takes
several deltas (the header is 18 characters, a delta ``--chunk-size``: the 5th delta with 4). So
the raw reader's TTFC is the time to the content delta with that same index (worked out from the
reply and the chunk size), not to the first non-empty delta (only ``"[[ #"``); the time to that
first delta is in the JSON as ``raw_first_delta_ms``. Total: to ``[DONE]`` (raw), to the
Prediction (dspex). Each stream's clock starts when its coroutine starts.

Figures, medians over every stream (``--streams`` of each one at a time after a warm-up, raw
and dspex alternating, then ``--rounds`` rounds of ``--concurrency`` streams at once, raw and
dspex alternating):

- TTFC beyond raw = median(dspex TTFC) - median(raw TTFC); target <= 1 ms, one at a time;
  reported at ``--concurrency``, where both TTFCs are mostly waiting for the other streams (the
  raw reader does not even yield between events already received, so its streams run one after
  another, while dspex's interleave: its TTFC there says more about scheduling than cost);
- overhead per chunk (reported) = (dspex time - raw time) / (streams x chunks dspex sent), the
  time being a stream's median total one at a time, and a round's median wall time at
  ``--concurrency``: the call's fixed costs (actor hop, routing, formatting, the final parse)
  spread over its chunks;
- overhead per chunk after the first (reported, one at a time) = ((dspex total - dspex TTFC) -
  (raw total - raw TTFC)) / (chunks - 1), on the medians: the streaming path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).parent))
from _common import INPUTS, SIGNATURE, Row, ScriptedServer, dspex_runtime, percentile, quiet, report

import dspex
from dspex.testing import Reply, ScriptedLM

HEADER = "[[ ## answer ## ]]"
PROSE = (
    "Paris is the capital and most populous city of France, on the Seine in the north of the "
    "country, at the heart of the Ile-de-France region; it has been a centre of finance, "
    "diplomacy, commerce, culture, fashion and gastronomy for centuries. "
)


def answer_text(chars: int) -> str:
    """``chars`` characters of prose, without a bracket (which a field listener holds back)."""
    return (PROSE * (chars // len(PROSE) + 1))[:chars].strip()


def reply_text(chars: int) -> str:
    return f"{HEADER}\n{answer_text(chars)}\n\n[[ ## completed ## ]]"


def first_chunk_delta(text: str, chunk_size: int) -> int:
    """The 1-based index of the content delta with which the header and a non-blank character
    after it have arrived: the earliest delta at which a field listener can send a chunk."""
    for end in range(chunk_size, len(text) + chunk_size, chunk_size):
        seen = text[:end]
        at = seen.find(HEADER)
        if at != -1 and seen[at + len(HEADER) :].strip():
            return end // chunk_size
    raise ValueError("the reply has no text after its header")


class Sample(NamedTuple):
    ttfc: float  # seconds to the first chunk (raw: to the like-for-like delta)
    total: float  # seconds to [DONE] (raw) or the Prediction (dspex)
    chunks: int  # content deltas read (raw) or StreamChunks sent (dspex)
    first_delta: float = 0.0  # raw only: seconds to the first non-empty content delta


#: One stream read to its end, timed.
Reader = Callable[[], Awaitable[Sample]]


# -- the server -----------------------------------------------------------------------------------


class StreamServer(ScriptedServer):
    """This script's ``--serve`` in a process of its own: a ScriptedLM streaming the reply."""

    def __init__(self, reply: Reply):
        super().__init__()
        self.command = [
            sys.executable,
            __file__,
            "--serve",
            "--reply",
            msgspec.json.encode(reply).decode(),
        ]


async def serve(reply: Reply) -> None:
    """Serve ``reply`` until SIGINT or SIGTERM; print the base URL first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with ScriptedLM(reply, strict=False, record=False) as server:
        print(server.base_url, flush=True)
        await stop.wait()


@contextlib.asynccontextmanager
async def lm_server(reply: Reply, in_process: bool) -> AsyncIterator[str]:
    """The base URL of a ScriptedLM streaming ``reply``: in its own process, or in this one."""
    if in_process:
        async with ScriptedLM(reply, strict=False, record=False) as server:
            yield server.base_url
    else:
        with StreamServer(reply) as process:
            yield process.url


async def recorded_request(reply: Reply) -> tuple[bytes, dict[str, str]]:
    """The body and content headers of the request dspex sends for one stream, recorded by a
    ScriptedLM in this process (the raw reader sends the same bytes)."""
    async with ScriptedLM(reply, strict=False) as server, dspex_runtime(server.base_url) as rt:
        predict = await dspex.Predict.create(SIGNATURE, runtime=rt)
        async for _ in predict.stream(INPUTS, implementation="native"):
            pass
        request = server.requests[-1]
    if (request.body or {}).get("stream") is not True:
        raise RuntimeError(f"dspex's stream request was not streamed: {request.body}")
    keep = {"content-type", "authorization"}
    headers = {name: value for name, value in request.headers.items() if name.lower() in keep}
    return request.content, headers


# -- the contenders -------------------------------------------------------------------------------


def raw_reader(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], first_at: int
) -> Reader:
    """A stream read by hand: POST, then every ``data:`` line decoded until ``[DONE]``."""
    endpoint = f"{url}/chat/completions"
    decode = msgspec.json.decode
    clock = time.perf_counter

    async def stream() -> Sample:
        t0 = clock()
        ttfc = first = 0.0
        deltas = 0
        async with session.post(endpoint, data=body, headers=headers) as response:
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                choices = decode(data)["choices"]
                if choices and choices[0]["delta"].get("content"):
                    deltas += 1
                    if deltas == 1:
                        first = clock() - t0
                    if deltas == first_at:
                        ttfc = clock() - t0
        total = clock() - t0
        if deltas < first_at:
            raise RuntimeError(f"the raw stream had {deltas} content deltas, fewer than {first_at}")
        return Sample(ttfc, total, deltas, first)

    return stream


def dspex_reader(predict: Any, answer: str) -> Reader:
    """``predict.stream(...)`` to its Prediction."""
    clock = time.perf_counter
    chunk_type, prediction_type = dspex.StreamChunk, dspex.Prediction

    async def stream() -> Sample:
        t0 = clock()
        ttfc = 0.0
        chunks = 0
        last: object = None
        async for event in predict.stream(INPUTS, implementation="native"):
            if type(event) is chunk_type:
                chunks += 1
                if chunks == 1:
                    ttfc = clock() - t0
            else:
                last = event
        total = clock() - t0
        if not isinstance(last, prediction_type) or last.answer != answer or not chunks:
            raise RuntimeError(f"the stream sent {chunks} chunks and ended with {last!r}")
        return Sample(ttfc, total, chunks)

    return stream


# -- measuring ------------------------------------------------------------------------------------


async def sequential(raw: Reader, ours: Reader, streams: int) -> tuple[list[Sample], list[Sample]]:
    """``streams`` of each, one at a time, alternating (and which goes first), after a warm-up."""
    for _ in range(max(20, streams // 4)):
        await raw()
        await ours()
    raw_samples, our_samples = [], []
    for i in range(streams):
        if i % 2:
            our_samples.append(await ours())
            raw_samples.append(await raw())
        else:
            raw_samples.append(await raw())
            our_samples.append(await ours())
    return raw_samples, our_samples


async def concurrent(
    raw: Reader, ours: Reader, concurrency: int, rounds: int
) -> tuple[list[Sample], list[Sample], list[float], list[float]]:
    """``rounds`` rounds of ``concurrency`` streams at once, raw and dspex alternating, after a
    warm-up round of each; also each round's wall time (seconds)."""
    await asyncio.gather(*(raw() for _ in range(concurrency)))
    await asyncio.gather(*(ours() for _ in range(concurrency)))
    raw_samples: list[Sample] = []
    our_samples: list[Sample] = []
    raw_walls: list[float] = []
    our_walls: list[float] = []
    for i in range(rounds):
        order = [(raw, raw_samples, raw_walls), (ours, our_samples, our_walls)]
        for stream, samples, walls in order[::-1] if i % 2 else order:
            t0 = time.perf_counter()
            samples += await asyncio.gather(*(stream() for _ in range(concurrency)))
            walls.append(time.perf_counter() - t0)
    return raw_samples, our_samples, raw_walls, our_walls


class Figures(NamedTuple):
    """Medians over every stream of one view (milliseconds); ``wall_ms``: of one stream
    (sequential) or of one round of ``at_once`` streams (concurrent)."""

    at_once: int
    raw_ttfc_ms: float
    ttfc_ms: float
    raw_total_ms: float
    total_ms: float
    raw_wall_ms: float
    wall_ms: float
    raw_first_delta_ms: float
    chunks: int
    raw_deltas: int
    raw_ttfc_p99_ms: float
    ttfc_p99_ms: float

    @property
    def ttfc_beyond_ms(self) -> float:
        return self.ttfc_ms - self.raw_ttfc_ms

    @property
    def per_chunk_us(self) -> float:
        return (self.wall_ms - self.raw_wall_ms) / (self.at_once * self.chunks) * 1e3

    @property
    def raw_per_chunk_us(self) -> float:
        return self.raw_wall_ms / (self.at_once * self.chunks) * 1e3

    @property
    def after_first_us(self) -> float:
        ours = self.total_ms - self.ttfc_ms
        raw = self.raw_total_ms - self.raw_ttfc_ms
        return (ours - raw) / max(1, self.chunks - 1) * 1e3

    @property
    def raw_after_first_us(self) -> float:
        return (self.raw_total_ms - self.raw_ttfc_ms) / max(1, self.chunks - 1) * 1e3


def figures(
    raw: list[Sample],
    ours: list[Sample],
    raw_walls: list[float] | None = None,
    our_walls: list[float] | None = None,
    at_once: int = 1,
) -> Figures:
    def ms(samples: list[Sample], field: str, p: float | None = None) -> float:
        values = [getattr(s, field) * 1e3 for s in samples]
        return statistics.median(values) if p is None else percentile(values, p)

    raw_total, total = ms(raw, "total"), ms(ours, "total")
    return Figures(
        at_once=at_once,
        raw_ttfc_ms=ms(raw, "ttfc"),
        ttfc_ms=ms(ours, "ttfc"),
        raw_total_ms=raw_total,
        total_ms=total,
        raw_wall_ms=statistics.median(raw_walls) * 1e3 if raw_walls else raw_total,
        wall_ms=statistics.median(our_walls) * 1e3 if our_walls else total,
        raw_first_delta_ms=ms(raw, "first_delta"),
        chunks=round(statistics.median(s.chunks for s in ours)),
        raw_deltas=round(statistics.median(s.chunks for s in raw)),
        raw_ttfc_p99_ms=ms(raw, "ttfc", 99),
        ttfc_p99_ms=ms(ours, "ttfc", 99),
    )


def rows(view: str, fig: Figures) -> list[Row]:
    beyond = fig.ttfc_beyond_ms
    sequential = fig.at_once == 1
    out = [
        Row(
            f"TTFC beyond raw, {view}",
            beyond,
            "ms",
            baseline=fig.raw_ttfc_ms,
            baseline_name="raw SSE reader's TTFC",
            target="<= 1 ms" if sequential else "reported",
            ok=beyond <= 1.0 if sequential else None,
        ),
        Row(
            f"overhead per chunk, {view} ({fig.chunks} chunks)",
            fig.per_chunk_us,
            "us",
            baseline=fig.raw_per_chunk_us,
            baseline_name="raw per chunk",
            target="reported",
        ),
    ]
    if sequential:
        out.append(
            Row(
                f"overhead per chunk after the first, {view}",
                fig.after_first_us,
                "us",
                baseline=fig.raw_after_first_us,
                baseline_name="raw per chunk",
                target="reported",
            )
        )
    return out


async def measure(args: argparse.Namespace) -> dict[str, Figures]:
    text = reply_text(args.chars)
    answer = answer_text(args.chars)
    first_at = first_chunk_delta(text, args.chunk_size)
    reply = Reply(text, chunk_size=args.chunk_size, chunk_delay=args.chunk_delay)
    body, headers = await recorded_request(Reply(text, chunk_size=args.chunk_size))
    callers = max(256, args.concurrency)
    async with (
        lm_server(reply, args.in_process) as url,
        dspex_runtime(url, callers=callers, adaptive={"explore_rate": 0.0}) as rt,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=callers, limit_per_host=0)
        ) as session,
    ):
        predict = await dspex.Predict.create(SIGNATURE, runtime=rt)
        raw = raw_reader(session, url, body, headers, first_at)
        ours = dspex_reader(predict, answer)
        seq = figures(*await sequential(raw, ours, args.streams))
        conc = await concurrent(raw, ours, args.concurrency, args.rounds)
    return {
        "sequential": seq,
        f"{args.concurrency} concurrent": figures(*conc, at_once=args.concurrency),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer streams and rounds")
    parser.add_argument("--streams", type=int, help="sequential streams of each (default 200)")
    parser.add_argument("--concurrency", type=int, default=50, help="streams at once")
    parser.add_argument("--rounds", type=int, help="concurrent rounds of each (default 8)")
    parser.add_argument("--chars", type=int, default=1000, help="characters of answer text")
    parser.add_argument("--chunk-size", type=int, default=4, help="characters per SSE delta")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between SSE events (default 0)"
    )
    parser.add_argument("--in-process", action="store_true", help="the LM server in this loop")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reply", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(msgspec.json.decode(args.reply, type=Reply)))
        return 0
    if args.streams is None:
        args.streams = 50 if args.quick else 200
    if args.rounds is None:
        args.rounds = 2 if args.quick else 8
    quiet()
    results = asyncio.run(measure(args))
    table: list[Row] = []
    for view, fig in results.items():
        table += rows(view, fig)
        print(
            f"{view}: TTFC raw {fig.raw_ttfc_ms:.3f} ms (first delta {fig.raw_first_delta_ms:.3f}"
            f" ms), dspex {fig.ttfc_ms:.3f} ms; p99 raw {fig.raw_ttfc_p99_ms:.3f}, dspex "
            f"{fig.ttfc_p99_ms:.3f} ms; total raw {fig.raw_total_ms:.3f} ms, dspex "
            f"{fig.total_ms:.3f} ms; wall raw {fig.raw_wall_ms:.3f}, dspex {fig.wall_ms:.3f} "
            f"ms; {fig.chunks} chunks from {fig.raw_deltas} deltas"
        )
    extra = {
        "settings": {
            "streams": args.streams,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "chars": args.chars,
            "chunk_size": args.chunk_size,
            "chunk_delay": args.chunk_delay,
            "server": "in process" if args.in_process else "own process",
        },
        "figures": {view: fig._asdict() for view, fig in results.items()},
    }
    return 0 if report("bench_stream", table, extra) else 1


if __name__ == "__main__":
    sys.exit(main())
