"""Native Predict / ChainOfThought beside DSPy 3.4.1, on the same instant LM, in one run.

    python benchmarks/bench_native.py [--quick]

Two views, one call at a time:

- framework overhead, with an instant LM in process (no HTTP): native modules on a client that
  answers at once, DSPy's ``acall`` and sync call on ``dspy.utils.DummyLM``. The target: native
  overhead at most 1/10 of DSPy's ``acall``.
- end to end over HTTP against a ScriptedLM in its own process that answers at once: the floor
  (a raw aiohttp POST of the same request), native, and ``dspy.Predict.acall`` (LiteLLM engine,
  as dspex's dspy backend runs it, and DSPy's default engine); overhead = time - floor.

The adapter work alone (format + parse) is measured by bench_adapters.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import aiohttp
import dspy

sys.path.insert(0, str(Path(__file__).parent))
from _common import InstantClient, Row, report, scripted_server, sequential

from dspex.backends.native import ChatAdapter, NativeChainOfThought, NativePredict
from dspex.lm import LM, LMClient
from dspex.signature import Signature

REPLY = (
    "[[ ## reasoning ## ]]\nParis is the capital.\n\n[[ ## answer ## ]]\nParis\n\n"
    "[[ ## completed ## ]]"
)
INPUTS = {"question": "What is the capital of France?"}
SIG = Signature.parse("question -> answer")

Call = Callable[[], Awaitable[object]]


async def instant_calls() -> dict[str, Call]:
    lm = LM("openai/instant")
    client: Any = InstantClient(REPLY)
    native_predict = NativePredict(SIG, lm=lm, client=client)
    native_cot = NativeChainOfThought(SIG, lm=lm, client=client)
    answers = {"reasoning": "Paris is the capital.", "answer": "Paris"}
    dummy = dspy.utils.DummyLM([answers] * 200_000)
    dspy_predict = dspy.Predict("question -> answer")
    dspy_cot = dspy.ChainOfThought("question -> answer")

    def on_dspy(module: Any) -> Call:
        async def call() -> object:
            with dspy.context(lm=dummy, adapter=dspy.ChatAdapter()):
                return await module.acall(**INPUTS)

        return call

    def on_dspy_sync(module: Any) -> Call:
        async def call() -> object:
            with dspy.context(lm=dummy, adapter=dspy.ChatAdapter()):
                return module(**INPUTS)

        return call

    return {
        "instant: native Predict": lambda: native_predict(INPUTS),
        "instant: dspy Predict.acall": on_dspy(dspy_predict),
        "instant: dspy Predict sync": on_dspy_sync(dspy_predict),
        "instant: native ChainOfThought": lambda: native_cot(INPUTS),
        "instant: dspy ChainOfThought.acall": on_dspy(dspy_cot),
        "instant: dspy ChainOfThought sync": on_dspy_sync(dspy_cot),
    }


async def calls(base: str, client: LMClient, session: aiohttp.ClientSession) -> dict[str, Call]:
    lm = LM("openai/bench", api_base=base, api_key="bench")
    messages = ChatAdapter().format(SIG, (), INPUTS)
    body = {"model": "bench", "messages": messages}
    headers = {"Authorization": "Bearer bench"}

    async def floor() -> object:
        async with session.post(f"{base}/chat/completions", json=body, headers=headers) as r:
            return await r.read()

    native_predict = NativePredict(SIG, lm=lm, client=client)
    native_cot = NativeChainOfThought(SIG, lm=lm, client=client)
    dspy_predict, dspy_cot = (
        dspy.Predict("question -> answer"),
        dspy.ChainOfThought("question -> answer"),
    )
    litellm_lm, default_lm = lm.to_dspy(), lm.to_dspy(engine="auto")

    def on_dspy(module: Any, dspy_lm: Any) -> Call:
        async def call() -> object:
            with dspy.context(lm=dspy_lm, adapter=dspy.ChatAdapter()):
                return await module.acall(**INPUTS)

        return call

    return {
        "floor: raw aiohttp POST": floor,
        "native Predict": lambda: native_predict(INPUTS),
        "dspy Predict.acall (litellm)": on_dspy(dspy_predict, litellm_lm),
        "dspy Predict.acall (default engine)": on_dspy(dspy_predict, default_lm),
        "native ChainOfThought": lambda: native_cot(INPUTS),
        "dspy ChainOfThought.acall (litellm)": on_dspy(dspy_cot, litellm_lm),
    }


async def measure(base: str, requests: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Best (wall, cpu) microseconds per call of each, over interleaved rounds."""
    best: dict[str, tuple[float, float]] = {}
    async with LMClient() as client, aiohttp.ClientSession() as session:
        named = {**await instant_calls(), **await calls(base, client, session)}
        for _ in range(rounds):
            for name, call in named.items():
                n = requests // 5 if "dspy" in name else requests
                wall, cpu = await sequential(call, n)
                old = best.get(name, (wall, cpu))
                best[name] = (min(wall, old[0]), min(cpu, old[1]))
    return best


def rows(best: dict[str, tuple[float, float]]) -> list[Row]:
    out = []
    for module in ("Predict", "ChainOfThought"):
        native = best[f"instant: native {module}"][0]
        dspy_async = best[f"instant: dspy {module}.acall"][0]
        out.append(
            Row(
                f"{module} overhead, instant LM: native vs acall",
                native,
                "us",
                baseline=dspy_async,
                baseline_name="dspy acall",
                target="<= 0.1x dspy",
                ok=native <= 0.1 * dspy_async,
            )
        )
        out.append(
            Row(
                f"{module} overhead, instant LM: native vs sync",
                native,
                "us",
                baseline=best[f"instant: dspy {module} sync"][0],
                baseline_name="dspy sync call",
                target="reported",
            )
        )
    floor_wall, floor_cpu = best["floor: raw aiohttp POST"]
    out.append(Row("HTTP floor: raw aiohttp POST + read", floor_wall, "us"))
    for module in ("Predict", "ChainOfThought"):
        native = best[f"native {module}"][0] - floor_wall
        dspy_litellm = best[f"dspy {module}.acall (litellm)"][0] - floor_wall
        out.append(
            Row(
                f"{module} over HTTP, beyond the floor",
                native,
                "us",
                baseline=dspy_litellm,
                baseline_name="dspy acall, litellm",
                target="reported",
            )
        )
        out.append(
            Row(
                f"{module} overhead: native vs floor",
                best[f"native {module}"][0],
                "us",
                baseline=floor_wall,
                baseline_name="raw aiohttp",
                target="reported",
            )
        )
    default = best["dspy Predict.acall (default engine)"][0] - floor_wall
    out.append(
        Row(
            "Predict overhead: native vs dspy default engine",
            best["native Predict"][0] - floor_wall,
            "us",
            baseline=default,
            baseline_name="dspy acall, default engine",
            target="reported",
        )
    )
    native_cpu = best["native Predict"][1] - floor_cpu
    dspy_cpu = best["dspy Predict.acall (litellm)"][1] - floor_cpu
    out.append(
        Row(
            "Predict client CPU beyond the floor",
            native_cpu,
            "us",
            baseline=dspy_cpu,
            baseline_name="dspy acall, litellm",
            target="reported",
        )
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    requests, rounds = (300, 2) if args.quick else (1500, 3)
    with scripted_server(REPLY) as base:
        best = asyncio.run(measure(base, requests, rounds))
    return 0 if report("bench_native", rows(best)) else 1


if __name__ == "__main__":
    sys.exit(main())
