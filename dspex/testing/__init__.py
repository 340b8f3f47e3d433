"""Test helpers for dspex users: a scripted OpenAI-compatible LM server.

:class:`ScriptedLM` serves ``POST /v1/chat/completions`` on 127.0.0.1 from a script of
:data:`Action` values, records every request, and works with dspex's native client, DSPy
(``dspy.LM("openai/<name>", api_base=lm.base_url, api_key="test")``) and any other
OpenAI-compatible client::

    from dspex.testing import Hang, Reply, ScriptedLM, Status

    async with ScriptedLM([Status(503), Reply("Paris", latency=0.05)]) as lm:
        ...  # point a client at lm.base_url
    assert lm.requests[1].messages[-1]["role"] == "user"

For benchmarks, run it as its own process: ``python -m dspex.testing serve --port 0``.
"""

from dspex.testing._actions import (
    Action,
    Drop,
    Hang,
    Malformed,
    RecordedRequest,
    Reply,
    Script,
    Status,
)
from dspex.testing._chaos import Chaos, chaos
from dspex.testing._faults import FaultInjector, InjectedCrash, inject_faults
from dspex.testing._respond import respond
from dspex.testing._server import ScriptedLM
from dspex.testing._soak import SoakReport, soak
from dspex.testing._telemetry import (
    Telemetry,
    assert_fell_back,
    assert_native_crashed,
    assert_restarted,
    capture_telemetry,
)

__all__ = [
    "Action",
    "Chaos",
    "Drop",
    "FaultInjector",
    "Hang",
    "InjectedCrash",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Script",
    "ScriptedLM",
    "SoakReport",
    "Status",
    "Telemetry",
    "assert_fell_back",
    "assert_native_crashed",
    "assert_restarted",
    "capture_telemetry",
    "chaos",
    "inject_faults",
    "respond",
    "soak",
]
