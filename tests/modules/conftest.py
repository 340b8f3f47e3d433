"""A runtime whose default LM is a ScriptedLM answering in each request's own format."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dspex.config import Config
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM, respond

ANSWER = respond(
    answer="Paris",
    reasoning="Paris is the capital of France.",
    next_thought="I know the answer.",  # what a ReAct step asks for
    next_tool_name="finish",
    next_tool_args={},
)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLM]:
    async with ScriptedLM(ANSWER, strict=False) as lm:
        yield lm


def lm_of(server: ScriptedLM) -> LM:
    return LM("openai/scripted", api_base=server.base_url, api_key="sk-secret-test-key")


@pytest.fixture
def config() -> Config:
    """Overridden by tests that need another configuration."""
    return Config(adaptive={"explore_rate": 0.0})


@pytest.fixture
async def rt(server: ScriptedLM, config: Config) -> AsyncIterator[Runtime]:
    async with Runtime(lm=lm_of(server), config=config) as runtime:
        yield runtime
