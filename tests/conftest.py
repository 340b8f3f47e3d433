"""Shared fixtures: a running Runtime per test, and a guard that no task outlives its test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

# DSPy's litellm must never try to fetch its model cost map: the suite runs offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from dspex.runtime import Runtime


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    """A running Runtime; on teardown it is shut down and no actor task may be left."""
    before = asyncio.all_tasks()
    async with Runtime() as rt:
        yield rt
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    left.discard(asyncio.current_task())  # type: ignore[arg-type]
    assert not left, f"tasks left running after shutdown: {left}"
