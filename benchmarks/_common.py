"""Shared by the benchmark scripts: the workload, test doubles, timing and memory helpers, the
subprocess runner, the table printer and the JSON writer.

Every figure is reported beside a baseline measured in the same run, and targets are ratios.
Scripts import this with ``sys.path.insert(0, <benchmarks dir>)``; importing it does not import
dspy (the helpers that need it import it when called).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM stays offline

import dspex
from dspex.backends.native import NativeBackend
from dspex.lm import LM, Completion, Usage

HERE = Path(__file__).parent
RESULTS = HERE / "results"
PLOTS = HERE / "plots"

Call = Callable[[], Awaitable[object]]

# -- the workload every benchmark sends ---------------------------------------------------------

QUESTION = "What is the capital of France?"
INPUTS = {"question": QUESTION}
SIGNATURE = "question -> answer"
#: The LM's reply: it parses for Predict and ChainOfThought alike (Predict ignores reasoning).
REPLY = (
    "[[ ## reasoning ## ]]\nParis is the capital.\n\n[[ ## answer ## ]]\nParis\n\n"
    "[[ ## completed ## ]]"
)
#: The same reply as DSPy's DummyLM produces it.
ANSWERS = {"reasoning": "Paris is the capital.", "answer": "Paris"}
#: The most concurrent callers any benchmark drives; module actors and pools are sized for it.
MAX_CALLERS = 5000

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\s*$)", re.S)


def regex_parse(text: str) -> dict[str, str]:
    """The floor's parser: ``[[ ## name ## ]]`` sections into a dict, one regex, no checks."""
    return {name: value for name, value in _FIELD.findall(text) if name != "completed"}


def quiet() -> None:
    """Silence what benchmarks would otherwise print per call: crash reports (a service
    configures logging), DSPy's and LiteLLM's warnings."""
    warnings.simplefilter("ignore")
    logging.getLogger("dspex").setLevel(logging.CRITICAL)
    for name in ("dspy", "LiteLLM", "litellm", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


# -- test doubles ---------------------------------------------------------------------------------


class InstantClient:
    """Stands in for LMClient: answers every request at once with the same completion, without
    HTTP, so a benchmark sees the framework's own cost."""

    def __init__(self, text: str = REPLY):
        self.completion = Completion(
            texts=[text], finish_reasons=["stop"], usage=Usage(), model="instant"
        )

    async def complete(self, lm: LM, messages: object, **options: object) -> Completion:
        return self.completion


def dummy_lm() -> Any:
    """DSPy's own instant LM (``dspy.utils.DummyLM``) answering :data:`ANSWERS` forever."""
    import dspy

    lm = dspy.utils.DummyLM([ANSWERS])
    lm.answers = itertools.repeat(ANSWERS)
    return lm


class InstantDSPyBackend:
    """The runtime's dspy backend with every module's LM swapped for :func:`dummy_lm`: dspex on
    dspy with an instant LM, as :class:`InstantClient` is for native. DSPy is imported when the
    first dspy module is built, as the real backend does."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name
        self.lm: Any = None

    @property
    def module_types(self) -> frozenset[str]:
        return frozenset(self.inner.module_types)

    def info(self) -> dict[str, Any]:
        return dict(self.inner.info())

    async def create(self, spec: Any) -> Any:
        instance = await self.inner.create(spec)
        if self.lm is None:
            self.lm = dummy_lm()
        instance.lm = self.lm
        return instance

    async def execute(self, instance: Any, inputs: Any, options: Any) -> Any:
        return await self.inner.execute(instance, inputs, options)

    def release(self, instance: Any) -> None:
        self.inner.release(instance)


@contextlib.asynccontextmanager
async def dspex_runtime(
    url: str | None = None, *, callers: int = MAX_CALLERS, **config: Any
) -> AsyncIterator[dspex.Runtime]:
    """A dspex Runtime through the public API, sized for ``callers`` concurrent calls per module.

    ``max_concurrency=callers`` and ``mailbox_size=2 * callers`` (defaults 256 and 1,024 would
    otherwise bound the calls in flight per module), ``implementation_preference="native_first"``
    (so the adaptive policy's exploration does not mix dspy into native figures), and a native
    connection pool of ``callers`` (``max_connections``), and the dspy implementation in this
    process (``dspy_workers=0``: the published dspy figures of these scripts are in-process ones;
    bench_workers.py passes ``dspy_workers`` to measure worker processes, the default), and the
    response cache off (every call reaches the LM, as with the plain DSPy baselines'
    ``cache=False``; bench_cache.py measures it). Without
    ``url`` the LM is instant: :class:`InstantClient` for native and
    :class:`InstantDSPyBackend` for dspy. ``config`` overrides the Config.
    """
    settings: dict[str, Any] = {
        "implementation_preference": "native_first",
        "max_concurrency": callers,
        "mailbox_size": 2 * callers,
        "max_connections": callers,
        "dspy_workers": 0,
        "cache": {"memory_mb": 0},
        **config,
    }
    lm = dspex.LM("openai/bench", api_base=url or "http://127.0.0.1:9/v1", api_key="bench")
    async with contextlib.AsyncExitStack() as stack:
        rt = await stack.enter_async_context(dspex.Runtime(lm=lm, config=dspex.Config(**settings)))
        if url is None:
            rt.backends["native"] = NativeBackend(InstantClient())  # type: ignore[arg-type]
            rt.backends["dspy"] = InstantDSPyBackend(rt.backends["dspy"])
        yield rt


def dspy_lm(url: str, engine: str | None = None) -> Any:
    """A plain ``dspy.LM`` on ``url`` as a DSPy user makes one (DSPy's default engine unless
    ``engine``), with the cache off: every call reaches the server, as dspex's calls do."""
    import dspy

    extra = {"engine": engine} if engine else {}
    return dspy.LM("openai/bench", api_base=url, api_key="bench", cache=False, **extra)


def dspy_call(module: Any, lm: Any, *, sync: bool = False) -> Call:
    """One call of a plain DSPy module under ``dspy.context(lm=lm)``: ``acall`` or the sync
    ``__call__`` (the latter blocks the loop, as it would in a sync program)."""
    import dspy

    adapter = dspy.ChatAdapter()

    async def acall() -> object:
        with dspy.context(lm=lm, adapter=adapter):
            return await module.acall(**INPUTS)

    async def call() -> object:
        with dspy.context(lm=lm, adapter=adapter):
            return module(**INPUTS)

    return call if sync else acall


def request_body(module_type: str = "Predict") -> bytes:
    """The exact request body dspex's native module sends for :data:`INPUTS` (the floor's)."""
    import msgspec

    from dspex.backends.native import ChatAdapter
    from dspex.signature import Signature

    sig = Signature.parse(SIGNATURE)
    if module_type == "ChainOfThought":
        sig = sig.with_reasoning()
    messages = ChatAdapter().format(sig, (), INPUTS)
    return msgspec.json.encode({"model": "bench", "messages": messages})


def floor_call(session: Any, url: str, body: bytes) -> Call:
    """The floor: a raw aiohttp POST of ``body`` to ``url``, JSON decode, regex parse."""
    import msgspec

    endpoint = f"{url}/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    decode = msgspec.json.decode

    async def call() -> object:
        async with session.post(endpoint, data=body, headers=headers) as response:
            reply = decode(await response.read())
        return regex_parse(reply["choices"][0]["message"]["content"])

    return call


# -- servers and processes ------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ScriptedServer:
    """A ScriptedLM in its own process (so it does not compete for this process's CPU),
    answering ``reply`` after ``latency`` seconds: ``url`` and ``pid`` once entered."""

    def __init__(self, reply: str = REPLY, latency: float = 0.0):
        self.command = [sys.executable, "-m", "dspex.testing", "serve", "--reply", reply]
        self.command += ["--latency", str(latency)]
        self.url = ""
        self.pid = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ScriptedServer:
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.url, self.pid = self._proc.stdout.readline().strip(), self._proc.pid
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait()

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


@contextlib.contextmanager
def scripted_server(reply: str = REPLY, latency: float = 0.0) -> Iterator[str]:
    """A :class:`ScriptedServer`; yields its base URL."""
    with ScriptedServer(reply, latency) as server:
        yield server.url


def run_json(args: Sequence[str], timeout: float = 300.0) -> Any:
    """Run ``python <args>`` in a fresh process; return the JSON its last stdout line holds."""
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


# -- timing ---------------------------------------------------------------------------------------


async def sequential(call: Call, requests: int) -> tuple[float, float]:
    """Mean wall and CPU microseconds per call, one at a time, after a warm-up."""
    for _ in range(max(20, requests // 10)):
        await call()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await call()
    return (
        (time.perf_counter() - wall) / requests * 1e6,
        (time.process_time() - cpu) / requests * 1e6,
    )


async def best_sequential(
    calls: Mapping[str, Call], requests: Callable[[str], int], rounds: int
) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) µs per call of each of ``calls``, one at a time, over ``rounds``
    interleaved rounds (so that a disturbance hits all alike; the least disturbed run counts).
    ``requests(name)`` is how many calls one round of ``name`` makes."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            wall, cpu = await sequential(call, requests(name))
            old = best.get(name, (wall, cpu))
            best[name] = (min(wall, old[0]), min(cpu, old[1]))
    return best


def median_of(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# -- reporting ------------------------------------------------------------------------------------


class Row:
    """One measured figure: value, its baseline, and a target on the ratio (or the value).

    ``note`` says why a target is missed and what would close it (printed under the row)."""

    def __init__(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: float | None = None,
        baseline_name: str = "",
        target: str = "",
        ok: bool | None = None,
        note: str = "",
    ):
        self.name, self.value, self.unit = name, value, unit
        self.baseline, self.baseline_name = baseline, baseline_name
        self.target, self.ok, self.note = target, ok, note

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.ok,
            "note": self.note,
        }


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def report(bench: str, rows: list[Row], extra: Mapping[str, Any] | None = None) -> bool:
    """Print the table, write ``results/<bench>.json`` (with ``extra`` data beside the rows);
    True when every target is met."""
    print(f"\n{bench}")
    header = f"{'figure':50} {'value':>14} {'baseline':>14} {'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = f"{r.baseline:,.2f}" if r.baseline is not None else ""
        ratio = f"{r.ratio:.3f}x" if r.ratio is not None else ""
        verdict = "" if r.ok is None else ("met" if r.ok else "MISSED")
        target = f"{r.target} {verdict}".strip()
        print(f"{r.name:50} {r.value:>10,.2f} {r.unit:<3} {base:>14} {ratio:>8}  {target}")
        if r.baseline_name:
            print(f"{'':50} {'':>14} {'(' + r.baseline_name + ')':>14}")
        if r.note and r.ok is False:
            print(f"{'':50} why: {r.note}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{bench}.json"
    record = {"bench": bench, "machine": machine(), "rows": [r.as_dict() for r in rows]}
    out.write_text(json.dumps({**record, **(extra or {})}, indent=2) + "\n")
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return all(r.ok is not False for r in rows)


# -- contenders in processes of their own, best of interleaved rounds ---------------------------


def loop_arguments(doc: str, callers: int) -> Any:
    """The command line of a closed-loop benchmark (bench_programs.py, bench_workers.py):
    ``--quick``, ``--callers``, ``--measured``, ``--cap``, ``--rounds``, and the hidden
    ``--worker``/``--url`` a contender's own process is started with."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--callers", type=int, default=callers, help="concurrent callers")
    parser.add_argument(
        "--measured", type=int, help="calls counted after the warm-up (default: 2 x callers)"
    )
    parser.add_argument("--cap", type=float, default=60.0, help="max seconds per phase")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (best counts)")
    return parser.parse_args()


def settle_quick(args: Any, quick_cap: float) -> None:
    """``--quick``: one round, phases cut at ``quick_cap`` s, ``callers`` measured calls."""
    if args.quick:
        args.cap, args.rounds = quick_cap, 1
    if args.measured is None:
        args.measured = args.callers * (1 if args.quick else 2)


def contender_rounds(
    script: str,
    contenders: Mapping[str, str],
    args: Any,
    latency: float,
    describe: Callable[[dict[str, Any]], str] = lambda result: "",
) -> dict[str, dict[str, Any]]:
    """Each contender's best run (by throughput) of ``args.rounds`` interleaved rounds, each
    run in a fresh process (``script --worker <contender> --url <server>``) against one
    ScriptedServer answering after ``latency`` s; a line per run on stderr."""
    best: dict[str, dict[str, Any]] = {}
    with ScriptedServer(latency=latency) as server:
        for round_ in range(args.rounds):
            for kind, label in contenders.items():
                command = [script, "--worker", kind, "--url", server.url]
                command += ["--callers", str(args.callers), "--measured", str(args.measured)]
                command += ["--cap", str(args.cap)]
                result = run_json(command, timeout=180 + 2 * args.cap)
                if kind not in best or result["throughput"] > best[kind]["throughput"]:
                    best[kind] = result
                print(
                    f"  round {round_ + 1} {label:26} {args.callers:>5} callers: "
                    f"{result['throughput']:8,.0f} calls/s over {result['seconds']:4.1f} s, "
                    f"CPU {result['client_cpu_us']:6.0f} us/call (GC {result['gc_us']:4.0f}), "
                    f"{result['errors']} errors{describe(result)}",
                    file=sys.stderr,
                    flush=True,
                )
    return best
