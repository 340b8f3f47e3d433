"""The pytest plugin, run by pytest in a subprocess as a user's suite runs it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USERS_TESTS = '''
import asyncio

import pytest

import dspex
from dspex.testing import ScriptedLM, respond

DSPY_FIRST = dspex.Config(implementation_preference="dspy_first")


async def test_every_call_is_native_by_default(dspex_runtime, dspex_lm):
    dspex_lm.script = respond(answer="Paris")
    predict = await dspex.Predict.create("question -> answer")
    served = [(await predict(question=f"q{i}")).implementation for i in range(60)]
    assert served == ["native"] * 60


@pytest.mark.dspex(config=DSPY_FIRST)
async def test_the_marker_configures_the_runtime(dspex_runtime, dspex_lm):
    assert dspex_runtime.config is DSPY_FIRST
    dspex_lm.script = respond(answer="Paris")
    pred = await dspex.Predict.create("question -> answer")
    assert [(await pred(question="q")).implementation for _ in range(3)] == ["dspy"] * 3


@pytest.fixture
async def stopped_afterwards():
    """Set up before the factory, so checked after its teardown."""
    started = []
    yield started
    assert [runtime.state for runtime in started] == ["stopped", "stopped"]
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("dspex:")]


async def test_the_factory_starts_runtimes_and_stops_them(
    stopped_afterwards, dspex_runtime_factory, dspex_lm
):
    dspex_lm.script = respond(answer="Paris")
    async with ScriptedLM(respond(answer="Lyon")) as elsewhere:
        lm = dspex.LM("openai/elsewhere", api_base=elsewhere.base_url, api_key="k")
        first = await dspex_runtime_factory()
        second = await dspex_runtime_factory(config=DSPY_FIRST, lm=lm)
        stopped_afterwards.extend([first, second])
        on_first = await dspex.Predict.create("question -> answer", runtime=first)
        on_second = await dspex.Predict.create("question -> answer", runtime=second)
        paris, lyon = await on_first(question="q"), await on_second(question="q")
    assert (paris.answer, paris.implementation) == ("Paris", "native")
    assert (lyon.answer, lyon.implementation) == ("Lyon", "dspy")


@pytest.mark.dspex(DSPY_FIRST)
async def test_a_misused_marker_is_reported(dspex_runtime):
    pass
'''


def test_the_fixtures_as_a_users_suite_uses_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USERS_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "asyncio", "-o", "asyncio_mode=auto", "--strict-markers"
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ConfigError: @pytest.mark.dspex takes only config= and lm= keywords, got Config(*"]
    )


def test_the_plugin_is_registered_for_users(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import dspex

        async def test_uses_the_fixtures(dspex_runtime, dspex_lm):
            predict = await dspex.Predict.create("question -> answer")
            assert (await predict(question="q")).answer == ""
        """
    )
    result = pytester.runpytest_subprocess("-p", "asyncio", "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=1)
