"""Fixtures for dspex.lm tests. DSPy's tests run offline: no LiteLLM cost-map download."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from dspex.lm import LMClient, RetryPolicy

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

FAST_RETRY = RetryPolicy(initial_delay=0.001, max_delay=0.005, jitter=0.0)


@pytest.fixture
async def client() -> AsyncIterator[LMClient]:
    """An LMClient with millisecond backoffs, closed after the test."""
    async with LMClient(retry=FAST_RETRY) as lm_client:
        yield lm_client
