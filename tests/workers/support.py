"""What the worker tests share: the LM on the ScriptedLM, the runtime's worker slots, and a
bounded wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import dspex
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM
from dspex.workers import WorkerBackend
from dspex.workers._worker import WorkerSlot


def lm_of(server: ScriptedLM) -> dspex.LM:
    return dspex.LM("openai/scripted", api_base=server.base_url, api_key="sk-test")


def workers(rt: Runtime) -> list[WorkerSlot]:
    backend = rt.backends["dspy"]
    assert isinstance(backend, WorkerBackend)
    return backend.slots


async def until(check: Any, seconds: float = 120.0) -> None:
    """Wait until ``check()`` is true (a worker, a Ray actor above all, may take seconds)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)
