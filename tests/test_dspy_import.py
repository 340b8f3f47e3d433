"""DSPy and LiteLLM are imported once, off the event loop, and then frozen out of the collector.

Each case runs in a fresh interpreter: this one imported dspy long ago.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import asyncio, gc, sys, threading
from dspex.backends.dspy import import_dspy

started = []
_start = threading.Thread.start
def start(self):
    started.append(self.name)
    _start(self)
threading.Thread.start = start

async def main():
    first = asyncio.ensure_future(import_dspy(gc_freeze={freeze}))
    await asyncio.sleep(0.05)
    first.cancel()  # a call past its deadline while the import runs
    ticks = 0
    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
    ticker = asyncio.ensure_future(tick())
    dspy = await import_dspy(gc_freeze={freeze})
    ticker.cancel()
    assert first.cancelled()
    assert dspy is sys.modules["dspy"] and await import_dspy(gc_freeze={freeze}) is dspy
    print(started.count("dspex-import"), "litellm" in sys.modules, gc.get_freeze_count() > 0,
          ticks > 10)

asyncio.run(main())
"""


@pytest.mark.parametrize("freeze", [True, False])
def test_one_import_runs_off_the_loop_though_its_first_waiter_is_cancelled(freeze: bool) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(freeze=freeze)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # One import thread, LiteLLM imported with DSPy (not on the loop at the first LM call),
    # the objects frozen only when asked, and the event loop ran all along.
    assert out.stdout.split() == ["1", "True", str(freeze), "True"]


@pytest.mark.parametrize("preload", [True, False])
def test_preload_dspy_imports_dspy_and_litellm_while_the_runtime_starts(preload: bool) -> None:
    script = (
        "import asyncio, sys, dspex\n"
        "async def main():\n"
        f"    config = dspex.Config(preload_dspy={preload}, dspy_workers=0)\n"
        "    async with dspex.Runtime(config=config):\n"
        "        print('dspy' in sys.modules, 'litellm' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    assert _printed(script) == [str(preload), str(preload)]


def test_preload_dspy_with_the_default_workers_starts_them_and_imports_nothing_here() -> None:
    script = (
        "import asyncio, sys, dspex\n"
        "async def main():\n"
        "    async with dspex.Runtime(config=dspex.Config(preload_dspy=True)) as rt:\n"
        "        slots = rt.backends['dspy'].slots\n"
        "        print(len(slots), all(s.accepting for s in slots))\n"
        "        print('dspy' in sys.modules, 'litellm' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    # one worker per core, each taking calls once the runtime has started; DSPy is theirs
    cores = str(len(os.sched_getaffinity(0)))
    assert _printed(script) == [cores, "True", "False", "False"]


def _printed(script: str) -> list[str]:
    """What ``script`` prints, run in a fresh interpreter (which must succeed), word by word."""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


RACE = """
import asyncio, importlib.machinery, json, sys, threading, traceback

importers = set()  # the threads that import DSPy's or LiteLLM's modules before it is loaded
class Watch:
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("dspy", "litellm") and name not in sys.modules:
            shared = sys.modules.get("dspex._dspy_import")
            if shared is None or shared.loaded() is None:
                importers.add(threading.current_thread().name)
        if name != "dspy":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = Hold(spec.loader)
        return spec
held = threading.Event()
release = threading.Event()
class Hold:  # DSPy's import stops at its start (dspy half imported) until released
    def __init__(self, loader):
        self.loader = loader
    def create_module(self, spec):
        return self.loader.create_module(spec)
    def exec_module(self, module):
        held.set()
        release.wait(60)
        self.loader.exec_module(module)
sys.meta_path.insert(0, Watch())

import logging
logging.disable(logging.CRITICAL)  # LiteLLM's logging worker dislikes several event loops
import dspex
from dspex.backends.native import JSONAdapter
from dspex.testing import ScriptedLM, respond

failures = []
planned = threading.Semaphore(0)

def record(results):
    for result in results:
        if isinstance(result, BaseException):
            failures.append("".join(traceback.format_exception(result)))

async def modules(url, n):
    # n dspy modules at once from n tasks, a native one, then a call on each
    lm = dspex.LM("openai/x", api_base=url, api_key="k")
    # in this process (dspy_workers=0): the import race is that of DSPy imported here
    config = dspex.Config(adaptive={"explore_rate": 0}, dspy_workers=0)
    async with dspex.Runtime(lm=lm, config=config):
        made = await asyncio.gather(
            *(dspex.Predict.create("question -> answer", implementation="dspy") for _ in range(n)),
            dspex.ChainOfThought.create("question -> answer"),
            return_exceptions=True,
        )
        record(made)
        ready = [m for m in made if not isinstance(m, BaseException)]
        record(await asyncio.gather(*(m(question="q") for m in ready), return_exceptions=True))

def sync_paths(url):
    # what imports DSPy from synchronous code: signature and LM conversions, a dspy type
    try:
        dspex.Signature.parse("question -> answer").to_dspy()
        dspex.LM("openai/x", api_base=url, api_key="k").to_dspy()
        dspex.Signature.parse("photo: dspy.Image -> caption")
    except BaseException as exc:
        failures.append("".join(traceback.format_exception(exc)))

def native_plans():
    # native prompt templates of signatures never seen, built while DSPy is half imported:
    # each looks for dspy.Types in its fields (as a native call does the first time it uses an
    # adapter, e.g. the JSON adapter after a reply the chat one cannot parse)
    held.wait(60)
    try:
        for i in range(20):
            sig = dspex.Signature.parse(f"question -> answer_{threading.get_ident()}_{i}")
            JSONAdapter().format(sig, (), {"question": "q"})
    except BaseException as exc:
        failures.append("".join(traceback.format_exception(exc)))
    finally:
        planned.release()

async def main():
    async with ScriptedLM(respond(answer="Paris", reasoning="r")) as server:
        go = threading.Event()
        def in_thread(fn):
            def run():
                go.wait()
                fn()
            return threading.Thread(target=run)
        threads = [in_thread(lambda: asyncio.run(modules(server.base_url, 10))) for _ in range(3)]
        threads += [in_thread(lambda: sync_paths(server.base_url)) for _ in range(2)]
        plans = [in_thread(native_plans) for _ in range(2)]
        for thread in threads + plans:
            thread.start()
        go.set()
        here = asyncio.ensure_future(modules(server.base_url, 20))  # 20 + 3 x 10: 50 modules
        await asyncio.to_thread(held.wait, 60)  # DSPy's import has started, and waits
        for _ in plans:  # while the native templates are built
            await asyncio.to_thread(planned.acquire, timeout=60)
        release.set()
        await here
        await asyncio.to_thread(lambda: [thread.join() for thread in threads + plans])
    print(json.dumps({"failures": failures, "importers": sorted(importers)}))

asyncio.run(main())
"""


def _race() -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_fifty_dspy_modules_started_at_once_from_tasks_and_threads_import_dspy_once() -> None:
    # 20 fresh interpreters, 2 at a time (the suite runs on 2 cores; about 50 s): each starts
    # 50 dspy modules at once from 20 tasks and 3 threads with event loops of their own, while
    # 2 threads convert signatures and LMs to DSPy's and 2 build native templates, the import
    # being held half done meanwhile: what two imports at once meet (ImportError: ... from
    # partially initialized module) never happens.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _race(), range(20)))
    failures = [failure for result in results for failure in result["failures"]]  # type: ignore[attr-defined]
    assert failures == [], failures[0]
    # DSPy and LiteLLM were imported by the one import thread alone: no other imported any of
    # their modules meanwhile (every other waited, or only read what was imported).
    assert [result["importers"] for result in results] == [["dspex-import"]] * 20
