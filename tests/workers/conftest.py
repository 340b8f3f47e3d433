"""The worker tests' ScriptedLM, answering Paris (helpers: support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dspex.testing import ScriptedLM, respond


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLM]:
    async with ScriptedLM(respond(answer="Paris"), strict=False) as lm:
        yield lm
