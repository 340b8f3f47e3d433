"""Fall back only where dspy could succeed, in one request: requests counted per LM failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import dspex
from dspex.config import Config
from dspex.errors import LMConnectionError, LMError, LMTimeout, ParseError
from dspex.lm import LM
from dspex.runtime import Runtime
from dspex.testing import Action, Drop, Hang, Malformed, ScriptedLM, Status
from tests.cli.conftest import closed_port_url
from tests.modules.conftest import ANSWER


@pytest.fixture
async def rt(server: ScriptedLM) -> AsyncIterator[Runtime]:
    """One native retry (with no wait: ``Retry-After: 0``, or a timeout of 0.2 s)."""
    lm = LM("openai/scripted", api_base=server.base_url, api_key="k", num_retries=1, timeout=0.2)
    async with Runtime(lm=lm, config=Config(adaptive={"explore_rate": 0.0})) as runtime:
        yield runtime


# (what the LM does to every request, the error, native's requests, dspy's requests)
CASES: list[tuple[Action | str, type[LMError], int, int]] = [
    *((Status(code), LMError, 1, 0) for code in (400, 401, 403, 404, 422)),
    (Status(429, retry_after=0), LMError, 2, 0),  # native waits as asked, retries; no fallback
    (Status(500, retry_after=0), LMError, 2, 1),
    (Status(503, retry_after=0), LMError, 2, 1),
    (Hang(), LMTimeout, 2, 1),
    (Drop(), LMConnectionError, 2, 1),
    (Malformed(), LMError, 1, 1),  # a 200 whose body is not a chat completion
]


@pytest.mark.parametrize(
    ("action", "error", "native", "dspy"),
    CASES,
    ids=[getattr(case[0], "code", type(case[0]).__name__) for case in CASES],
)
async def test_requests_per_failure(
    rt: Runtime,
    server: ScriptedLM,
    action: Action,
    error: type[LMError],
    native: int,
    dspy: int,
) -> None:
    predict = await dspex.Predict.create("question -> answer")
    await predict.execute({"question": "warm"}, implementation="dspy")  # DSPy, LiteLLM loaded
    server.script = action
    server.requests.clear()
    with pytest.raises(LMError) as info:
        await predict(question="q")
    assert type(info.value) is error  # native's error, whatever dspy's was
    assert len(server.requests) == native + dspy
    if isinstance(action, Status):
        assert info.value.status == action.code
    if dspy:
        assert isinstance(info.value.fallback_error, LMError)  # dspy's, attached
        assert "the dspy fallback failed too: " in str(info.value)
    else:
        assert info.value.fallback_error is None
    native_metrics = (await rt.metrics()).modules["Predict"]["native"]
    assert (native_metrics.calls, native_metrics.fallbacks) == (1, dspy)
    assert predict.actor.alive


async def test_an_unparsable_reply_is_tried_once_on_dspy(rt: Runtime, server: ScriptedLM) -> None:
    server.script = "no idea"
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(ParseError) as info:
        await predict(question="q")
    assert len(server.requests) == 4  # each tries the ChatAdapter, then the JSONAdapter
    assert isinstance(info.value.fallback_error, ParseError)


async def test_a_transient_failure_is_answered_by_dspy(rt: Runtime, server: ScriptedLM) -> None:
    server.script = [Status(503, retry_after=0), Status(503, retry_after=0), ANSWER]
    predict = await dspex.Predict.create("question -> answer")
    result = await predict(question="q")
    assert (result.answer, result.implementation, result.fallback) == ("Paris", "dspy", True)
    assert result.fallback_reason is not None
    assert result.fallback_reason.startswith("LMError: the LM at ")
    assert "HTTP 503" in result.fallback_reason
    assert len(server.requests) == 3


async def test_a_429_is_retried_as_the_server_asks_without_falling_back(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = [Status(429, retry_after=0.05), ANSWER]
    predict = await dspex.Predict.create("question -> answer")
    result = await predict(question="q")
    assert (result.implementation, result.fallback) == ("native", False)
    assert len(server.requests) == 2


async def test_a_retry_after_past_the_deadline_is_not_waited_for(
    rt: Runtime, server: ScriptedLM
) -> None:
    server.script = Status(429, retry_after=30)
    predict = await dspex.Predict.create("question -> answer")
    with pytest.raises(LMError, match="would start after the call's deadline") as info:
        await predict.execute({"question": "q"}, timeout=10)
    assert not isinstance(info.value, dspex.Timeout)  # the 429 itself, not a cut-off wait
    assert info.value.status == 429
    assert len(server.requests) == 1


async def test_with_the_endpoint_down_the_caller_gets_natives_clear_error() -> None:
    url = closed_port_url()
    lm = LM("openai/scripted", api_base=url, api_key="k", num_retries=0)
    async with Runtime(lm=lm, config=Config(adaptive={"explore_rate": 0.0})):
        predict = await dspex.Predict.create("question -> answer")
        with pytest.raises(LMConnectionError) as info:
            await predict(question="q")
    message = str(info.value)
    assert message.startswith(f"could not reach the LM at {url}/chat/completions: ")
    assert "\n" not in message  # LiteLLM's lines of advice stay on the attached error
    assert "lm15" not in message
    assert "RouterConfig" not in message
    assert isinstance(info.value.fallback_error, LMError)  # dspy was tried once, and failed
