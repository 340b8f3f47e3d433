"""A CI-sized chaos run: faults everywhere, yet no call lost, late or left running."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from dspex.runtime import Runtime
from dspex.testing import soak


async def test_chaos_loses_no_call_and_leaves_nothing_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="dspex")  # a few hundred crash reports otherwise
    report = await soak(
        2500,
        concurrency=50,
        deadline=2.0,
        native_crash_rate=0.05,
        lm_error_rate=0.05,
        lm_hang_rate=0.01,
        malformed_rate=0.02,
        seed=1,
    )
    assert report.reconciled
    assert report.lost == 0  # every call: a Prediction or a dspex error
    assert report.past_deadline == 0, f"worst overrun {report.worst_overrun_s:.2f} s"
    assert report.tasks_left == 0
    assert report.supervisor_escalations == 0  # restart intensity held
    assert report.succeeded > 0.8 * report.submitted
    assert report.native_crashes > 0  # the faults really happened...
    assert report.fallbacks > 0
    assert all(report.injected[kind] > 0 for kind in ("crash", "lm_error", "lm_hang"))
    assert report.restarts == 0  # ...and each crash cost its own call at most: no actor died
    # ModuleError: native crashed and the dspy fallback met an LM fault too
    assert set(report.errors) <= {"Timeout", "ParseError", "LMError", "LMTimeout", "ModuleError"}


async def test_only_tasks_dspex_named_count_as_left_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="dspex")
    # Another library's task whose code lives under a folder named dspex, as LiteLLM's logging
    # worker does in a checkout named dspex (.../dspex/.venv/...): not dspex's.
    worker = tmp_path / "dspex" / "worker.py"
    worker.parent.mkdir()
    worker.write_text("async def wait(event):\n    await event.wait()\n")
    spec = importlib.util.spec_from_file_location("someone_elses_worker", worker)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    release = asyncio.Event()
    others: list[asyncio.Task[None]] = []
    forgotten = AsyncExitStack()  # a runtime the user forgot to shut down: dspex's tasks

    async def start_both() -> None:  # runs once soak() has taken its snapshot of the tasks
        others.append(asyncio.create_task(module.wait(release)))
        await forgotten.enter_async_context(Runtime())

    report, _ = await asyncio.gather(soak(20, concurrency=4, seed=2), start_both())

    (other,) = others
    assert f"{os.sep}dspex{os.sep}" in other.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    alive = {task for task in asyncio.all_tasks() if not task.done()}
    await forgotten.aclose()
    await asyncio.sleep(0)
    stopped = {task for task in alive if task.done()}
    assert stopped
    assert all(task.get_name().startswith("dspex:") for task in stopped)
    assert report.tasks_left == len(stopped)  # the forgotten runtime's tasks, and only them
    assert not other.done()
    release.set()
    await other
