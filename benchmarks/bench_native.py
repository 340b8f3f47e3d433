"""Per-call overhead through the public API, beside DSPy 3.4.1 and the floor, in one run.

    python benchmarks/bench_native.py [--quick]

For Predict and ChainOfThought, one call at a time, best of interleaved rounds, two views:

- instant LM in process (the framework's own cost, no HTTP): dspex native and dspex on dspy
  through ``await module(question=...)`` on a Runtime (native on an instant LM client, dspy on
  DSPy's DummyLM), plain ``dspy.Module.acall`` and the plain sync call on DummyLM, and the floor
  in process (an instant client's completion + a regex parse);
- over HTTP against a ScriptedLM in its own process that answers at once: the floor (a raw
  aiohttp POST of the request dspex sends + JSON decode + a regex parse), dspex native, dspex on
  dspy (LiteLLM engine, as dspex runs DSPy), plain ``acall`` on DSPy's default engine and on the
  LiteLLM engine, and the plain sync call. Overhead = time - the floor's time.

Targets: native at most 1/10 of DSPy's ``acall`` (aim 1/20) in process and beyond the floor over
HTTP; native within 5x of the floor over HTTP. The adapters alone: bench_adapters.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    INPUTS,
    SIGNATURE,
    Call,
    InstantClient,
    Row,
    best_sequential,
    dspex_runtime,
    dspy_call,
    dspy_lm,
    dummy_lm,
    floor_call,
    quiet,
    regex_parse,
    report,
    request_body,
    scripted_server,
)

import dspex

MODULE_TYPES = ("Predict", "ChainOfThought")


async def dspex_calls(rt: dspex.Runtime, module_type: str, prefix: str) -> dict[str, Call]:
    """dspex native and dspex on dspy, through the facade of ``module_type``."""
    facade = getattr(dspex, module_type)
    native = await facade.create(SIGNATURE, implementation="native", runtime=rt)
    on_dspy = await facade.create(SIGNATURE, implementation="dspy", runtime=rt)
    assert (await native(**INPUTS)).answer == "Paris"
    assert (await on_dspy(**INPUTS)).answer == "Paris"
    return {
        f"{prefix} {module_type}: dspex native": lambda: native(**INPUTS),
        f"{prefix} {module_type}: dspex on dspy": lambda: on_dspy(**INPUTS),
    }


def dspy_calls(module_type: str, prefix: str, lms: dict[str, object]) -> dict[str, Call]:
    """Plain DSPy: ``acall`` on each of ``lms`` and the sync call on the first."""
    import dspy

    module = getattr(dspy, module_type)(SIGNATURE)
    (first_name, first), *_ = lms.items()
    calls = {
        f"{prefix} {module_type}: dspy acall{name}": dspy_call(module, lm)
        for name, lm in lms.items()
    }
    calls[f"{prefix} {module_type}: dspy sync{first_name}"] = dspy_call(module, first, sync=True)
    return calls


def instant_floor(module_type: str) -> Call:
    client, lm = InstantClient(), dspex.LM("openai/instant")
    messages = [{"role": "user", "content": module_type}]

    async def call() -> object:
        completion = await client.complete(lm, messages)
        return regex_parse(completion.texts[0])

    return call


async def measure(url: str, quick: bool) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) µs per call of every contender, in interleaved rounds."""
    calls: dict[str, Call] = {}
    async with (
        dspex_runtime(callers=256) as instant_rt,
        dspex_runtime(url, callers=256) as http_rt,
        aiohttp.ClientSession() as session,
    ):
        for module_type in MODULE_TYPES:
            calls[f"instant {module_type}: floor"] = instant_floor(module_type)
            calls.update(await dspex_calls(instant_rt, module_type, "instant"))
            calls.update(dspy_calls(module_type, "instant", {"": dummy_lm()}))
            calls[f"http {module_type}: floor"] = floor_call(
                session, url, request_body(module_type)
            )
            calls.update(await dspex_calls(http_rt, module_type, "http"))
            lms = {"": dspy_lm(url), " (litellm)": dspy_lm(url, "litellm")}
            calls.update(dspy_calls(module_type, "http", lms))
        scale = 5 if quick else 1

        def requests(name: str) -> int:
            if "http" in name and "dspy" in name:
                return 150 // scale
            if "dspy" in name:
                return 300 // scale
            return (1500 if "http" in name else 3000) // scale

        return await best_sequential(calls, requests, rounds=2 if quick else 4)


def rows(best: dict[str, tuple[float, float]]) -> list[Row]:
    out = []
    for module_type in MODULE_TYPES:

        def us(view: str, who: str, module_type: str = module_type) -> float:
            return best[f"{view} {module_type}: {who}"][0]

        native, acall = us("instant", "dspex native"), us("instant", "dspy acall")
        out += [
            Row(
                f"{module_type} in process: native vs dspy acall",
                native,
                "us",
                baseline=acall,
                baseline_name="dspy acall, DummyLM",
                target="<= 0.1x (aim 0.05x)",
                ok=native <= 0.1 * acall,
            ),
            Row(
                f"{module_type} in process: native vs dspy sync",
                native,
                "us",
                baseline=us("instant", "dspy sync"),
                baseline_name="dspy sync call",
                target="reported",
            ),
            Row(
                f"{module_type} in process: dspex on dspy vs acall",
                us("instant", "dspex on dspy"),
                "us",
                baseline=acall,
                baseline_name="dspy acall, DummyLM",
                target="reported",
            ),
            Row(
                f"{module_type} in process: native vs floor",
                native,
                "us",
                baseline=us("instant", "floor"),
                baseline_name="instant reply+regex",
                target="reported",
            ),
        ]
        floor = us("http", "floor")
        native = us("http", "dspex native")
        out += [
            Row(
                f"{module_type} over HTTP: native vs floor",
                native,
                "us",
                baseline=floor,
                baseline_name="raw aiohttp+regex",
                target="<= 5x",
                ok=native <= 5 * floor,
            ),
            Row(
                f"{module_type} over HTTP, beyond floor: native",
                native - floor,
                "us",
                baseline=us("http", "dspy acall") - floor,
                baseline_name="dspy acall",
                target="<= 0.1x",
                ok=native - floor <= 0.1 * (us("http", "dspy acall") - floor),
            ),
            Row(
                f"{module_type} over HTTP, beyond floor: on dspy",
                us("http", "dspex on dspy") - floor,
                "us",
                baseline=us("http", "dspy acall (litellm)") - floor,
                baseline_name="dspy acall, litellm",
                target="reported",
            ),
            Row(
                f"{module_type} over HTTP, beyond floor: dspy sync",
                us("http", "dspy sync") - floor,
                "us",
                baseline=us("http", "dspy acall") - floor,
                baseline_name="dspy acall",
                target="reported",
            ),
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    args = parser.parse_args()
    quiet()
    with scripted_server() as url:
        best = asyncio.run(measure(url, args.quick))
    table = {name: {"wall_us": wall, "cpu_us": cpu} for name, (wall, cpu) in best.items()}
    return 0 if report("bench_native", rows(best), {"per_call": table}) else 1


if __name__ == "__main__":
    sys.exit(main())
