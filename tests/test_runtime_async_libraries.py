"""Which event loops dspex runs on: asyncio, including an anyio app on its asyncio backend; a
Runtime started under trio says clearly that dspex is asyncio-only."""

from __future__ import annotations

import anyio
import pytest
import trio

import dspex
from dspex.errors import ConfigError
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM, respond


def test_a_runtime_serves_in_an_app_started_by_anyio_run_on_asyncio() -> None:
    async def main() -> str:
        async with ScriptedLM(respond(answer="Paris")) as server:
            lm = LM("openai/scripted", api_base=server.base_url, api_key="k")
            async with Runtime(lm=lm):
                predict = await dspex.Predict.create("question -> answer")
                async with anyio.create_task_group() as group:  # the app's own structured code
                    answers: list[str] = []

                    async def ask(question: str) -> None:
                        answers.append((await predict(question=question)).answer)

                    for i in range(3):
                        group.start_soon(ask, f"q{i}")
                return ",".join(answers)

    assert anyio.run(main, backend="asyncio") == "Paris,Paris,Paris"


def test_a_runtime_under_trio_is_refused_with_what_to_do() -> None:
    async def main() -> None:
        async with Runtime():
            pass  # pragma: no cover - never reached

    with pytest.raises(ConfigError, match=r"asyncio only.*runs under trio.*backend=\"asyncio\""):
        trio.run(main)


def test_a_runtime_under_anyio_on_trio_is_refused_too() -> None:
    async def main() -> None:
        async with Runtime():
            pass  # pragma: no cover - never reached

    with pytest.raises(ConfigError, match="runs under trio"):
        anyio.run(main, backend="trio")
