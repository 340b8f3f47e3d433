"""A pytest plugin (registered through the ``pytest11`` entry point) for testing code that
uses dspex: fixtures for a scripted LM, a runtime wired to it, and span capture.

- ``dspex_lm``: a running :class:`~dspex.testing.ScriptedLM`; set ``dspex_lm.script``.
  By default it answers every requested output field with ``""``.
- ``dspex_runtime``: a running :class:`dspex.Runtime` whose default LM is ``dspex_lm``.
- ``dspex_telemetry``: a :class:`~dspex.testing.Telemetry` capture, empty at the test's start.

The async fixtures need pytest-asyncio; without it only ``dspex_telemetry`` is defined.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dspex.testing._respond import respond
from dspex.testing._server import ScriptedLM
from dspex.testing._telemetry import Telemetry, capture_telemetry


@pytest.fixture
def dspex_telemetry() -> Telemetry:
    """Spans dspex records during the test."""
    return capture_telemetry()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixtures need pytest-asyncio
    pass
else:
    from dspex.lm import LM
    from dspex.runtime import Runtime

    @pytest_asyncio.fixture
    async def dspex_lm() -> AsyncIterator[ScriptedLM]:
        """A scripted OpenAI-compatible LM on 127.0.0.1."""
        async with ScriptedLM(respond(), strict=False) as lm:
            yield lm

    @pytest_asyncio.fixture
    async def dspex_runtime(dspex_lm: ScriptedLM) -> AsyncIterator[Runtime]:
        """A running Runtime whose default LM is ``dspex_lm``."""
        lm = LM("openai/scripted", api_base=dspex_lm.base_url, api_key="test")
        async with Runtime(lm=lm) as runtime:
            yield runtime
