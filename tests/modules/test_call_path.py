"""One native call's path, file by file: the module layer stays readable in a handful of files.

The files whose code runs during one ``await predict(question=...)`` (after a first call has
warmed the module) are recorded with ``sys.setprofile`` and compared, floor by floor, with the
path docs/architecture.md walks through. A new file on the path fails this test: either the
path grew (make it shorter) or the page and this list must say why.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import FrameType

import dspex
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM

ROOT = Path(dspex.__file__).parent

#: The module layer: the handle, the runtime's "accepting?" (and its task supervisor), the
#: module actor (admission, route, attempt, fallback, report), the task supervisor starting
#: the call's task, the routing choice and the router taking the outcome.
MODULE_LAYER = {
    "modules/_facade.py",
    "runtime.py",
    "modules/_actor.py",
    "supervision/_tasks.py",
    "routing/_policy.py",
    "routing/_router.py",
}
#: The process model under it: ActorRef.call, the mailbox and the actor's loop; the Caller
#: that carries the deferred reply (the call task's TaskRef lives in _process.py too).
PROCESS_MODEL = {"actors/_process.py", "actors/_messages.py"}


async def test_a_native_call_runs_in_the_files_the_architecture_page_names(
    rt: Runtime, server: ScriptedLM
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    await predict(question="warm-up")  # first-call work (connection, caches) is not the path
    ran: set[str] = set()

    def record(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(ROOT) and "testing" not in path.parts:
                ran.add(path.relative_to(ROOT).as_posix())

    sys.setprofile(record)
    try:
        pred = await predict(question="What is the capital of France?")
        await asyncio.sleep(0.01)  # the router takes the call's outcome
    finally:
        sys.setprofile(None)
    assert pred.implementation == "native"
    layers = ("modules/", "routing/", "runtime.py", "supervision/")
    assert {p for p in ran if p.startswith(layers)} == MODULE_LAYER
    assert {p for p in ran if p.startswith("actors/")} == PROCESS_MODEL
    # below: the native implementation (backends/native/) and the LM client (lm/)
    assert "backends/native/_backend.py" in ran
    assert "lm/_client.py" in ran
    assert not {p for p in ran if p.startswith("backends/dspy/")}
    assert {p for p in ran if p.startswith("supervision/")} == {"supervision/_tasks.py"}
