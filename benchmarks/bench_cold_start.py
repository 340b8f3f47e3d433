"""Cold start: import, runtime start, first native and first dspy call, each in a fresh process.

    python benchmarks/bench_cold_start.py [--quick]

A fresh Python process (after one unmeasured run that warms the bytecode and page caches)
measures, in order: ``import dspex`` (and checks that it did not import dspy), entering a
``dspex.Runtime``, creating a native Predict and its first call, creating a dspy Predict and its
first call (which imports DSPy and LiteLLM), against a ScriptedLM in its own process that answers
at once. Beside them, in another fresh process, plain DSPy: ``import dspy``, then a
``dspy.Predict`` and its first ``acall``. Best (least) of ``--rounds`` interleaved runs.

Target: ``import dspex`` <= 0.25 s without importing dspy. The rest is reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import Row, ScriptedServer, report, run_json

HERE = str(Path(__file__).parent)

DSPEX = """
import json, sys, time
t0 = time.perf_counter()
import dspex
t1 = time.perf_counter()
dspy_imported = "dspy" in sys.modules
sys.path.insert(0, {here!r})
import asyncio
from _common import INPUTS, SIGNATURE, quiet
quiet()

async def main():
    lm = dspex.LM("openai/bench", api_base={url!r}, api_key="bench")
    t2 = time.perf_counter()
    async with dspex.Runtime(lm=lm) as rt:
        t3 = time.perf_counter()
        native = await dspex.Predict.create(SIGNATURE, implementation="native")
        assert (await native(**INPUTS)).implementation == "native"
        t4 = time.perf_counter()
        on_dspy = await dspex.Predict.create(SIGNATURE, implementation="dspy")
        assert (await on_dspy(**INPUTS)).implementation == "dspy"
        t5 = time.perf_counter()
    return {{"import dspex": t1 - t0, "runtime start": t3 - t2, "first native call": t4 - t3,
             "first dspy call": t5 - t4, "dspy imported": dspy_imported}}

print(json.dumps(asyncio.run(main())))
"""

DSPY = """
import json, sys, time
t0 = time.perf_counter()
import dspy
t1 = time.perf_counter()
sys.path.insert(0, {here!r})
import asyncio
from _common import INPUTS, SIGNATURE, dspy_lm, quiet
quiet()

async def main():
    t2 = time.perf_counter()
    lm = dspy_lm({url!r})
    with dspy.context(lm=lm):
        await dspy.Predict(SIGNATURE).acall(**INPUTS)
    t3 = time.perf_counter()
    return {{"import dspy": t1 - t0, "plain dspy first call": t3 - t2}}

print(json.dumps(asyncio.run(main())))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    best: dict[str, float] = {}
    imported = False
    with ScriptedServer() as server:
        scripts = [s.format(here=HERE, url=server.url) for s in (DSPEX, DSPY)]
        for script in scripts:
            run_json(["-c", script])  # warm the bytecode and page caches
        for _ in range(rounds):
            for script in scripts:
                out = run_json(["-c", script])
                imported |= bool(out.pop("dspy imported", False))
                for name, seconds in out.items():
                    best[name] = min(seconds, best.get(name, seconds))
    ok = best["import dspex"] <= 0.25 and not imported
    rows = [
        Row(
            "import dspex (fresh process)",
            best["import dspex"],
            "s",
            baseline=best["import dspy"],
            baseline_name="import dspy",
            target="<= 0.25 s, no dspy",
            ok=ok,
            note="dspy was imported" if imported else "see benchmarks/README.md (cold start)",
        ),
        Row(
            "runtime start (Runtime.__aenter__)",
            best["runtime start"] * 1e3,
            "ms",
            target="reported",
        ),
        Row(
            "first native call (create + call)",
            best["first native call"] * 1e3,
            "ms",
            target="reported",
        ),
        Row(
            "first dspy call (create + call, imports dspy)",
            best["first dspy call"],
            "s",
            baseline=best["import dspy"] + best["plain dspy first call"],
            baseline_name="import dspy + first acall",
            target="reported",
        ),
    ]
    return 0 if report("bench_cold_start", rows, {"seconds": best}) else 1


if __name__ == "__main__":
    sys.exit(main())
