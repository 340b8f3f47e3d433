"""``auto`` explores dspy only once DSPy is loaded: a cold import never holds up a live call."""

from __future__ import annotations

import json
import subprocess
import sys

from dspex._dspy_import import load_dspy
from dspex.routing._policy import explore

COLD = """
import asyncio, importlib.machinery, json, sys, threading

gate = threading.Event()
importers = []
class Hold:  # DSPy's import waits (in its module's code, holding no import lock of others')
    def __init__(self, loader):
        self.loader = loader
    def create_module(self, spec):
        return self.loader.create_module(spec)
    def exec_module(self, module):
        importers.append(threading.current_thread().name)
        gate.wait()  # until the calls below are done
        self.loader.exec_module(module)
class Finder:
    def find_spec(self, name, path, target=None):
        if name != "dspy":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = Hold(spec.loader)
        return spec
sys.meta_path.insert(0, Finder())

import dspex
from dspex import _dspy_import
from dspex.testing import ScriptedLM, respond

async def main():
    async with ScriptedLM(respond(answer="Paris")) as server:
        lm = dspex.LM("openai/x", api_base=server.base_url, api_key="k")
        # auto, and every call explores: each would go to dspy if DSPy were loaded (in this
        # process: tests/workers has the same for worker processes)
        config = dspex.Config(adaptive={{"explore_rate": 1.0}}, gc_freeze={freeze}, dspy_workers=0)
        async with dspex.Runtime(lm=lm, config=config):
            predict = await dspex.Predict.create("question -> answer")
            # (a call that waited for the import would wait for ever: cut at 60 s)
            cold = [
                (await asyncio.wait_for(predict(question="q"), 60)).implementation
                for _ in range(5)
            ]
            still_held = _dspy_import.loaded() is None
            gate.set()
            await asyncio.wrap_future(_dspy_import.warm(gc_freeze={freeze}))
            warm = [(await predict(question="q")).implementation for _ in range(3)]
    print(json.dumps({{
        "cold": cold, "still_held": still_held, "warm": warm, "importers": importers,
        "frozen": __import__("gc").get_freeze_count() > 0,
    }}))

asyncio.run(main())
"""


def test_exploring_calls_stay_on_native_until_dspy_is_loaded_in_the_background() -> None:
    for freeze in (True, False):
        out = subprocess.run(
            [sys.executable, "-c", COLD.format(freeze=freeze)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.splitlines()[-1])
        # Five calls wanted dspy while its import could not finish: all served by native, so
        # none waited for it (one that did would never have returned).
        assert result["cold"] == ["native"] * 5
        assert result["still_held"]
        # One import, started by the first exploring call, in the import thread.
        assert result["importers"] == ["dspex-import"]
        # Loaded (and frozen as Config.gc_freeze says): now the exploring calls go to dspy.
        assert result["warm"] == ["dspy"] * 3
        assert result["frozen"] is freeze


def test_explore_samples_the_implementation_that_does_not_lead() -> None:
    load_dspy()  # loaded: dspy may be explored
    assert explore("native", gc_freeze=False) == ("dspy", "explore")
    assert explore("dspy", gc_freeze=False) == ("native", "explore")
