"""DSPy and LiteLLM are imported once, off the event loop, and then frozen out of the collector.

Each case runs in a fresh interpreter: this one imported dspy long ago.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import asyncio, gc, sys, threading
from dspex.backends.dspy import import_dspy

started = []
_start = threading.Thread.start
def start(self):
    started.append(self.name)
    _start(self)
threading.Thread.start = start

async def main():
    first = asyncio.ensure_future(import_dspy(gc_freeze={freeze}))
    await asyncio.sleep(0.05)
    first.cancel()  # a call past its deadline while the import runs
    ticks = 0
    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
    ticker = asyncio.ensure_future(tick())
    dspy = await import_dspy(gc_freeze={freeze})
    ticker.cancel()
    assert first.cancelled()
    assert dspy is sys.modules["dspy"] and await import_dspy() is dspy
    print(started.count("dspex-import"), "litellm" in sys.modules, gc.get_freeze_count() > 0,
          ticks > 10)

asyncio.run(main())
"""


@pytest.mark.parametrize("freeze", [True, False])
def test_one_import_runs_off_the_loop_though_its_first_waiter_is_cancelled(freeze: bool) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(freeze=freeze)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # One import thread, LiteLLM imported with DSPy (not on the loop at the first LM call),
    # the objects frozen only when asked, and the event loop ran all along.
    assert out.stdout.split() == ["1", "True", str(freeze), "True"]


@pytest.mark.parametrize("preload", [True, False])
def test_preload_dspy_imports_dspy_and_litellm_while_the_runtime_starts(preload: bool) -> None:
    script = (
        "import asyncio, sys, dspex\n"
        "async def main():\n"
        f"    async with dspex.Runtime(config=dspex.Config(preload_dspy={preload})):\n"
        "        print('dspy' in sys.modules, 'litellm' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(preload), str(preload)]
