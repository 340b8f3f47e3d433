"""A ScriptedLM and a native LM client for the differential tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dspex.lm import LM, LMClient
from dspex.testing import ScriptedLM


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLM]:
    async with ScriptedLM(strict=False) as lm:
        yield lm


@pytest.fixture
async def client() -> AsyncIterator[LMClient]:
    async with LMClient() as c:
        yield c


@pytest.fixture
def lm(server: ScriptedLM) -> LM:
    return LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
