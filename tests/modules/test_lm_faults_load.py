"""Under LM faults, with ``Config()`` defaults, every call ends in a Prediction or a DSPexError.

The load of issue 14: 2,000 calls at 200 concurrent against an LM that answers 5% HTTP 500s,
hangs past the LM's own ``timeout=1.0`` on 1%, sends 2% malformed bodies and 2% replies with no
field headers; ``LM(num_retries=0)``, no call deadline. Each run is a fresh interpreter, as a
service starts: DSPy is cold, so ``auto``'s exploration imports it in the background while the
calls run. CI runs it twice (about 10 s each); ``benchmarks/chaos_faults.py`` runs it 10 times.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RUN = """
import asyncio, json, logging, threading
import msgspec
import dspex
from dspex.testing import soak

logging.getLogger("dspex").setLevel(logging.CRITICAL)
report = asyncio.run(
    asyncio.wait_for(  # a generous guard: a hung call fails the run instead of hanging it
        soak(
            2000,
            concurrency=200,
            config=dspex.Config(),
            native_crash_rate=0.0,
            lm_error_rate=0.05,
            lm_error_status=500,
            lm_hang_rate=0.01,
            malformed_rate=0.04,
            lm_timeout=1.0,
            lm_retries=0,
            seed={seed},
        ),
        timeout=240,
    )
)
threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print(json.dumps({{"report": msgspec.to_builtins(report), "threads": threads}}))
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_every_call_ends_in_a_prediction_or_a_dspex_error(seed: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", RUN.format(seed=seed)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[-1])
    report = result["report"]
    assert report["lost"] == 0  # no TypeError, ImportError, ... escaped the error tree
    assert report["succeeded"] + sum(report["errors"].values()) == 2000  # none hung either
    # An LM that did not answer in time is an LMTimeout: with no call deadline, no plain Timeout.
    assert set(report["errors"]) <= {"LMError", "LMTimeout", "LMConnectionError", "ParseError"}
    assert report["succeeded"] > 1900  # the failed native calls were served by dspy
    assert report["fallbacks"] > 0
    assert all(report["injected"][f"lm_{kind}"] > 0 for kind in ("error", "hang", "malformed"))
    assert report["injected"]["lm_unparsable"] > 0
    # Nothing of the runtime's outlives it: no task, worker thread or child process, and once
    # the event loop closed, no thread at all but the daemon one of DSPy's one-time import.
    assert (report["tasks_left"], report["threads_left"], report["processes_left"]) == (0, 0, 0)
    assert set(result["threads"]) <= {"dspex-import", "dspex-gc-freeze"}
