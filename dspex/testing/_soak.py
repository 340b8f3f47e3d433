"""``soak()``: many calls through a runtime under injected faults, reconciled afterwards."""

from __future__ import annotations

import asyncio
import glob
import os
import threading
import time
from typing import Any

import msgspec

from dspex.config import AdaptiveConfig, CacheConfig, CircuitConfig, Config
from dspex.errors import DSPexError
from dspex.lm import LM
from dspex.lm._config import DEFAULT_TIMEOUT
from dspex.modules import ChainOfThought, Predict
from dspex.runtime import Runtime
from dspex.testing._chaos import chaos
from dspex.testing._faults import inject_faults
from dspex.testing._respond import respond
from dspex.testing._server import ScriptedLM
from dspex.workers._zygote import zygote_pid

#: A caller may see its error this long after its deadline: timers fire when the event loop
#: gets to them, late by whatever synchronous work (LiteLLM's, under load) ran meanwhile.
DEADLINE_SLACK = 0.5


#: Every task dspex creates is named ``dspex:<kind>`` (``dspex:actor #12``, ``dspex:task of #12``,
#: ``dspex:parallel #0``, ...): the only tasks a soak run counts as left running. Others on the
#: loop, such as LiteLLM's logging worker, are not dspex's to stop.
TASK_PREFIX = "dspex:"


class SoakReport(msgspec.Struct, frozen=True):
    """What a soak run saw: every submitted call is a success or a typed error, or lost.

    ``native_crashes`` counts the calls whose native code crashed (each re-run on dspy),
    ``restarts`` the module actors restarted after crashing themselves (none, unless their own
    state broke). ``tasks_left`` counts dspex's tasks (see :data:`TASK_PREFIX`) started during
    the run and still running after the runtime shut down; ``threads_left`` its threads still
    running then: those named ``dspex-...`` (not the daemon thread of DSPy's one-time import,
    which outlives no process) and those still running sync user code for it
    (``Config.sync_threads``); ``processes_left`` the descendant processes (dspy workers, the
    LM server), both started during the run and still alive then.
    """

    submitted: int
    succeeded: int
    errors: dict[str, int]
    lost: int
    past_deadline: int
    worst_overrun_s: float
    fallbacks: int
    native_crashes: int
    restarts: int
    supervisor_escalations: int
    tasks_left: int
    threads_left: int
    processes_left: int
    injected: dict[str, int]
    rss_first_mb: float
    rss_last_mb: float
    seconds: float

    @property
    def rss_drift(self) -> float:
        """Relative RSS change between the first and the last tenth of the run."""
        if not self.rss_first_mb:
            return 0.0
        return (self.rss_last_mb - self.rss_first_mb) / self.rss_first_mb

    @property
    def reconciled(self) -> bool:
        """Whether successes, typed errors and lost calls add up to what was submitted."""
        return self.succeeded + sum(self.errors.values()) + self.lost == self.submitted


def rss_mb() -> float:
    """This process's resident memory in MB (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return 0.0


async def soak(
    calls: int = 2000,
    *,
    concurrency: int = 50,
    deadline: float | None = 2.0,
    native_crash_rate: float = 0.05,
    lm_error_rate: float = 0.05,
    lm_error_status: int = 503,
    lm_hang_rate: float = 0.01,
    malformed_rate: float = 0.02,
    lm_timeout: float | None = None,
    lm_retries: int = 3,
    config: Config | None = None,
    dspy_workers: int | None = None,
    seed: int = 0,
) -> SoakReport:
    """Run ``calls`` Predict and ChainOfThought calls, ``concurrency`` at a time, each with a
    ``deadline`` (None: none), against a ScriptedLM that answers HTTP ``lm_error_status``,
    hangs, malformed bodies and unparsable replies (half of ``malformed_rate`` each) at the
    given rates while the native implementation crashes at ``native_crash_rate``; then shut the
    runtime down and reconcile every call.

    The LM has ``timeout=lm_timeout`` (default: a quarter of the deadline, cutting hangs well
    inside it) and ``num_retries=lm_retries``. ``dspy_workers`` runs the dspy implementation
    (the fallback) in that many worker processes (``Config.dspy_workers``; None: its default,
    one per core; 0: in this process). The response cache is bounded at 2 MB (each call asks
    its own question: the default 256 MB would fill all run long and hide a leak in the RSS
    drift). ``config`` replaces the runtime's chaos configuration, as is: its
    ``call_timeout`` is then the calls' deadline."""
    before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    children_before = _child_pids()
    script = chaos(
        respond(answer="Paris", reasoning="It is the capital."),
        error_rate=lm_error_rate,
        status=lm_error_status,
        hang_rate=lm_hang_rate,
        malformed_rate=malformed_rate / 2,  # a body that is not JSON
        unparsable_rate=malformed_rate / 2,  # a reply no adapter can parse
        seed=seed,
    )
    if config is None:
        config = Config(
            call_timeout=deadline,
            adaptive=AdaptiveConfig(explore_rate=0.05),
            circuit=CircuitConfig(crash_threshold=3, window=10.0, cooldown=0.5),
            max_concurrency=concurrency,
            mailbox_size=concurrency * 4,
            max_restarts=1000,
            # every call asks a question of its own, so the response cache grows with the run
            # up to its bound (256 MB by default): bounded at 2 MB, it is full within the
            # first tenth, and the RSS drift measures what a leak would leave
            cache=CacheConfig(memory_mb=2),
        )
        if dspy_workers is not None:
            config = config.replace(dspy_workers=dspy_workers)
    deadline = config.call_timeout
    if lm_timeout is None:
        lm_timeout = deadline / 4 if deadline is not None else DEFAULT_TIMEOUT
    errors: dict[str, int] = {}
    succeeded = lost = past = fallbacks = 0
    worst = 0.0
    rss: list[float] = []
    started = time.perf_counter()
    async with ScriptedLM(script, strict=False, record=False) as server:
        # Hangs are cut by the LM client's own timeout.
        lm = LM(
            "openai/soak",
            api_base=server.base_url,
            api_key="soak",
            timeout=lm_timeout,
            num_retries=lm_retries,
        )
        async with Runtime(lm=lm, config=config) as runtime:
            modules_pid = runtime.modules.pid
            modules = [
                await Predict.create("question -> answer"),
                await ChainOfThought.create("question -> answer"),
            ]
            faults = inject_faults(runtime, crash_rate=native_crash_rate, seed=seed)
            tenth = max(1, calls // 10)
            submitted = 0

            async def caller() -> None:
                # A service's callers, each one call at a time (not ``calls`` tasks queued up
                # front: their frames alone would outweigh what the run measures).
                nonlocal submitted, succeeded, lost, past, fallbacks, worst
                while submitted < calls:
                    i = submitted
                    submitted += 1
                    begin = time.perf_counter()
                    try:
                        pred = await modules[i % 2](question=f"question {i}")
                        succeeded += 1
                        fallbacks += pred.fallback
                    except DSPexError as exc:
                        name = type(exc).__name__
                        errors[name] = errors.get(name, 0) + 1
                    except Exception:
                        lost += 1
                    if deadline is not None:
                        overrun = time.perf_counter() - begin - deadline
                        past += overrun > DEADLINE_SLACK
                        worst = max(worst, overrun)
                    if i % tenth == 0:
                        rss.append(rss_mb())

            await asyncio.gather(*(caller() for _ in range(min(concurrency, calls))))
            report = await runtime.metrics()
            crashes = sum(m.crashes for impls in report.modules.values() for m in impls.values())
            restarts = sum(report.restarts.values())
            escalations = 0 if runtime.modules.pid == modules_pid else 1
            injected = {**faults.injected, **{f"lm_{k}": v for k, v in script.counts.items()}}
    await asyncio.sleep(0)  # let cancelled tasks finish unwinding
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    left = [t for t in left if t.get_name().startswith(TASK_PREFIX)]
    threads = [
        t
        for t in set(threading.enumerate()) - threads_before
        if t.name.startswith("dspex") and not t.daemon and t.is_alive()
    ]
    # plus the threads still running sync user code for the runtime (anyio's, not named dspex)
    busy = runtime.threads.stats().busy if runtime.threads is not None else 0
    return SoakReport(
        submitted=calls,
        succeeded=succeeded,
        errors=errors,
        lost=lost,
        past_deadline=past,
        worst_overrun_s=max(0.0, worst),
        fallbacks=fallbacks,
        native_crashes=crashes,
        restarts=restarts,
        supervisor_escalations=escalations,
        tasks_left=len(left),
        threads_left=len(threads) + busy,
        processes_left=len(_child_pids() - children_before),
        injected=injected,
        rss_first_mb=rss[1] if len(rss) > 2 else (rss[0] if rss else 0.0),
        rss_last_mb=rss[-1] if rss else 0.0,
        seconds=time.perf_counter() - started,
    )


def _child_pids() -> set[int]:
    """The pids of this process's descendants that are alive (none where /proc is missing),
    but the zygote of the dspy workers: one per process, shared by its runtimes, it stays
    until the process exits (the workers it forks are counted)."""
    pids: set[int] = set()
    parents = [os.getpid()]
    while parents:
        for path in glob.glob(f"/proc/{parents.pop()}/task/*/children"):
            try:
                with open(path) as f:
                    children = [int(pid) for pid in f.read().split()]
            except OSError:  # the thread or process ended meanwhile
                continue
            pids.update(children)
            parents.extend(children)
    return pids - {zygote_pid()}


def summary(report: SoakReport) -> dict[str, Any]:
    """The report as a flat dict for printing, with the derived figures."""
    return {
        **msgspec.structs.asdict(report),
        "rss_drift": report.rss_drift,
        "reconciled": report.reconciled,
    }
