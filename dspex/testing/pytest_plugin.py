"""A pytest plugin (registered through the ``pytest11`` entry point) for testing code that
uses dspex: fixtures for a scripted LM, a runtime wired to it, and span capture.

- ``dspex_lm``: a running :class:`~dspex.testing.ScriptedLM`; set ``dspex_lm.script``.
  By default it answers every requested output field with ``""``.
- ``dspex_runtime``: a running :class:`dspex.Runtime` whose default LM is ``dspex_lm``, with
  :data:`TEST_CONFIG` (deterministic routing) unless the test is marked
  ``@pytest.mark.dspex(config=..., lm=...)``.
- ``dspex_runtime_factory``: ``await dspex_runtime_factory(config=..., lm=...)`` starts a
  runtime (same defaults); every runtime it started is shut down after the test.
- ``dspex_telemetry``: a :class:`~dspex.testing.Telemetry` capture, empty at the test's start.

The async fixtures need pytest-asyncio; without it only ``dspex_telemetry`` is defined.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from typing import Any, Protocol

import pytest

from dspex.config import AdaptiveConfig, Config
from dspex.errors import ConfigError
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing._respond import respond
from dspex.testing._server import ScriptedLM
from dspex.testing._telemetry import Telemetry, capture_telemetry

#: The fixtures' default configuration: ``Config()`` without adaptive exploration, so that under
#: the default ``auto`` preference every call goes where the router prefers (native, from the
#: start) instead of a random 5% to the other implementation. A ``config=`` given to the marker
#: or the factory is used as given instead.
TEST_CONFIG = Config(adaptive=AdaptiveConfig(explore_rate=0.0))


class RuntimeFactory(Protocol):
    """``dspex_runtime_factory``: start a runtime, shut down after the test."""

    def __call__(self, *, config: Config | None = None, lm: Any = None) -> Awaitable[Runtime]:
        """Start a :class:`dspex.Runtime` with ``config`` (default :data:`TEST_CONFIG`) on
        ``lm`` (default ``dspex_lm``); raises ``ConfigError`` for a bad config or LM."""
        ...


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``dspex`` marker."""
    config.addinivalue_line(
        "markers",
        "dspex(config=None, lm=None): the dspex.Config and LM of the dspex_runtime fixture "
        "(default: no adaptive exploration, on the dspex_lm fixture's ScriptedLM)",
    )


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("dspex")
    if marker is None:
        return {}
    unknown = sorted(set(marker.kwargs) - {"config", "lm"})
    if marker.args or unknown:
        raise ConfigError(
            f"@pytest.mark.dspex takes only config= and lm= keywords, got "
            f"{', '.join([*map(repr, marker.args), *unknown])}"
        )
    return dict(marker.kwargs)


@pytest.fixture
def dspex_telemetry() -> Telemetry:
    """Spans dspex records during the test."""
    return capture_telemetry()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def dspex_lm() -> AsyncIterator[ScriptedLM]:
        """A scripted OpenAI-compatible LM on 127.0.0.1."""
        async with ScriptedLM(respond(), strict=False) as lm:
            yield lm

    @pytest_asyncio.fixture
    async def dspex_runtime_factory(dspex_lm: ScriptedLM) -> AsyncIterator[RuntimeFactory]:
        """Start runtimes in a test: ``await dspex_runtime_factory(config=..., lm=...)``;
        each is shut down after the test, the last started first."""
        async with AsyncExitStack() as runtimes:

            async def start(*, config: Config | None = None, lm: Any = None) -> Runtime:
                if lm is None:
                    lm = LM("openai/scripted", api_base=dspex_lm.base_url, api_key="test")
                runtime = Runtime(lm=lm, config=TEST_CONFIG if config is None else config)
                return await runtimes.enter_async_context(runtime)

            yield start

    @pytest_asyncio.fixture
    async def dspex_runtime(
        request: pytest.FixtureRequest, dspex_runtime_factory: RuntimeFactory
    ) -> AsyncIterator[Runtime]:
        """A running Runtime whose default LM is ``dspex_lm``, configured by the test's
        ``@pytest.mark.dspex(config=..., lm=...)`` if any (else :data:`TEST_CONFIG`)."""
        yield await dspex_runtime_factory(**_marker_options(request))
