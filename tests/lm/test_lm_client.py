"""LMClient against ScriptedLM: bodies, retries, timeouts, typed errors, usage, concurrency."""

from __future__ import annotations

import asyncio
import socket
from email.utils import formatdate
from typing import Any

import pytest

from dspex.errors import ConfigError, LMConnectionError, LMError, LMTimeout, Timeout
from dspex.lm import LM, Completion, LMClient, Message, RetryPolicy, Usage
from dspex.lm._client import CALL_DEADLINE, retry_after_seconds
from dspex.testing import Drop, Hang, Malformed, Reply, ScriptedLM, Status

KEY = "sk-very-secret-key-123"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}]


def make_lm(server: ScriptedLM, **kwargs: Any) -> LM:
    return LM("openai/test-model", api_base=server.base_url, api_key=KEY, **kwargs)


def leftover_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_completion_and_the_request_it_sent(client: LMClient) -> None:
    async with ScriptedLM(Reply("Paris", prompt_tokens=12, completion_tokens=3)) as server:
        result = await client.complete(make_lm(server), MESSAGES)
    assert isinstance(result, Completion)
    assert (result.text, result.texts, result.finish_reasons) == ("Paris", ["Paris"], ["stop"])
    assert result.usage == Usage(12, 3, 15)
    assert (result.model, result.attempts) == ("test-model", 1)
    assert result.id.startswith("chatcmpl-")
    (request,) = server.requests
    assert request.body == {"model": "test-model", "messages": MESSAGES}
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"


async def test_message_structs_encode_like_dicts(client: LMClient) -> None:
    async with ScriptedLM("ok") as server:
        await client.complete(make_lm(server), [Message("user", "hi")])
    assert server.requests[0].messages == [{"role": "user", "content": "hi"}]


async def test_lm_settings_and_per_call_overrides(client: LMClient) -> None:
    async with ScriptedLM("ok") as server:
        lm = make_lm(server, temperature=0.0, max_tokens=100, extra={"seed": 7})
        await client.complete(lm, MESSAGES)
        await client.complete(
            lm, MESSAGES, temperature=0.9, max_tokens=5, n=2, extra={"stop": ["\n"]}
        )
    first, second = (r.body for r in server.requests)
    assert first is not None  # by DSPy's default engine: its spelling and order
    assert list(first.items()) == [
        ("model", "test-model"),
        ("messages", MESSAGES),
        ("max_completion_tokens", 100),
        ("temperature", 0.0),
        ("seed", 7),
    ]
    assert second is not None  # with n, by LiteLLM: its spelling and order
    assert list(second) == ["model", "messages", "temperature", "n", "stop", "max_tokens", "seed"]
    assert (second["temperature"], second["max_tokens"], second["n"]) == (0.9, 5, 2)


async def test_reasoning_models_get_max_completion_tokens(client: LMClient) -> None:
    async with ScriptedLM("ok") as server:
        await client.complete(
            LM("openai/gpt-5-mini", api_base=server.base_url, max_tokens=16000), []
        )
    assert server.requests[0].body == {
        "model": "gpt-5-mini",
        "messages": [],
        "max_completion_tokens": 16000,
    }


async def test_n_choices(client: LMClient) -> None:
    async with ScriptedLM(Reply(["a", "b", "c"], finish_reason="length")) as server:
        result = await client.complete(make_lm(server), MESSAGES, n=3)
    assert result.texts == ["a", "b", "c"]
    assert result.finish_reasons == ["length"] * 3
    assert server.requests[0].body is not None
    assert server.requests[0].body["n"] == 3


async def test_retries_then_success(client: LMClient) -> None:
    async with ScriptedLM([Status(503), Status(429), Drop(), Status(408), "finally"]) as server:
        result = await client.complete(make_lm(server, num_retries=4), MESSAGES)
    assert (result.text, result.attempts) == ("finally", 5)
    assert len(server.requests) == 5
    assert len({r.content for r in server.requests}) == 1  # the same body every time


async def test_retry_after_is_honoured() -> None:
    no_backoff = RetryPolicy(initial_delay=0.0, jitter=0.0)
    async with (
        LMClient(retry=no_backoff) as client,
        ScriptedLM([Status(429, retry_after=0.2), "ok"]) as server,
    ):
        await client.complete(make_lm(server), MESSAGES)
    first, second = server.requests
    assert first.finished_at is not None
    assert second.started_at - first.finished_at >= 0.2


async def test_retry_after_is_capped() -> None:
    capped = RetryPolicy(initial_delay=0.0, max_retry_after=0.01)
    async with (
        LMClient(retry=capped) as client,
        ScriptedLM([Status(503, retry_after=3600), "ok"]) as server,
    ):
        result = await client.complete(make_lm(server), MESSAGES)
    assert result.attempts == 2


async def test_no_retry_is_waited_for_past_the_calls_deadline(client: LMClient) -> None:
    loop = asyncio.get_running_loop()
    async with ScriptedLM([Status(429, retry_after=60), Status(503, retry_after=0), "ok"]) as lm:
        token = CALL_DEADLINE.set(loop.time() + 30)
        try:
            with pytest.raises(LMError, match="would start after the call's deadline") as info:
                await client.complete(make_lm(lm), MESSAGES)
            assert info.value.status == 429  # at once: the server's own answer, not a Timeout
            assert len(lm.requests) == 1
            CALL_DEADLINE.set(loop.time() + 30)
            result = await client.complete(make_lm(lm), MESSAGES)  # a retry within it goes
        finally:
            CALL_DEADLINE.reset(token)
    assert (result.text, result.attempts) == ("ok", 2)


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    future = retry_after_seconds({"retry-after": formatdate(4_000_000_000, usegmt=True)})
    assert future is not None
    assert future > 1e8
    assert retry_after_seconds({"retry-after": formatdate(0, usegmt=True)}) == 0.0
    for bad in ("soon", "-1", "nan", "inf"):
        assert retry_after_seconds({"retry-after": bad}) is None
    assert retry_after_seconds({}) is None


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.25)
    for retry, full in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)]:
        delays = {policy.delay(retry, None) for _ in range(50)}
        assert all(0.75 * full <= d <= full for d in delays)
        assert len(delays) > 1
    assert RetryPolicy(jitter=0.0).delay(2, None) == 4.0
    assert policy.delay(0, 3.0) == 3.0
    with pytest.raises(ConfigError):
        RetryPolicy(jitter=2.0)


async def test_400_is_not_retried(client: LMClient) -> None:
    async with ScriptedLM(Status(400, message="bad request: unknown field")) as server:
        with pytest.raises(LMError) as info:
            await client.complete(make_lm(server), MESSAGES)
    assert len(server.requests) == 1
    error = info.value
    assert type(error) is LMError
    assert error.status == 400
    assert "HTTP 400: bad request: unknown field" in str(error)
    assert error.body is not None
    assert "unknown field" in error.body


async def test_server_errors_exhaust_the_retries(client: LMClient) -> None:
    async with ScriptedLM(Status(503, message="overloaded")) as server:
        with pytest.raises(LMError, match=r"HTTP 503: overloaded \(after 3 attempts\)") as info:
            await client.complete(make_lm(server, num_retries=2), MESSAGES)
    assert info.value.status == 503
    assert len(server.requests) == 3


async def test_timeout_raises_lm_timeout(client: LMClient) -> None:
    async with ScriptedLM(Reply("late", latency=30)) as server:
        with pytest.raises(LMTimeout, match=r"did not answer within 0\.05 s") as info:
            await client.complete(make_lm(server, timeout=0.05, num_retries=0), MESSAGES)
    assert isinstance(info.value, Timeout)
    assert isinstance(info.value, TimeoutError)
    assert len(server.requests) == 1


async def test_per_call_timeout(client: LMClient) -> None:
    async with ScriptedLM(Reply("late", latency=30)) as server:
        with pytest.raises(LMTimeout, match=r"within 0\.05 s"):
            await client.complete(make_lm(server, num_retries=0), MESSAGES, timeout=0.05)


async def test_hang_is_retried_then_lm_timeout_and_the_server_stops_cleanly(
    client: LMClient,
) -> None:
    before = leftover_tasks()
    server = ScriptedLM(Hang())
    async with server:
        with pytest.raises(LMTimeout, match="after 2 attempts"):
            await client.complete(make_lm(server, timeout=0.05, num_retries=1), MESSAGES)
    assert len(server.requests) == 2
    assert all(r.finished_at is None for r in server.requests)
    assert leftover_tasks() <= before


async def test_timeouts_need_not_be_retried() -> None:
    no_timeout_retries = RetryPolicy(retry_timeouts=False)
    async with LMClient(retry=no_timeout_retries) as client, ScriptedLM(Hang()) as server:
        with pytest.raises(LMTimeout):
            await client.complete(make_lm(server, timeout=0.05), MESSAGES)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        (Malformed(), "is not valid JSON"),
        (Malformed('{"object": "chat.completion"}'), "missing required field `choices`"),
        (Malformed('{"choices": []}'), "has no choices"),
        (Malformed('{"choices": [{"message": {"content": 5}}]}'), "is not a chat.completion"),
    ],
)
async def test_malformed_body_is_a_clear_lm_error(
    client: LMClient, action: Malformed, problem: str
) -> None:
    async with ScriptedLM(action) as server:
        with pytest.raises(LMError, match=problem) as info:
            await client.complete(make_lm(server), MESSAGES)
    assert info.value.status == 200
    assert info.value.body == action.body
    assert len(server.requests) == 1


async def test_dropped_connection_is_retried_then_lm_connection_error(client: LMClient) -> None:
    async with ScriptedLM(Drop()) as server:
        with pytest.raises(LMConnectionError, match="ServerDisconnectedError") as info:
            await client.complete(make_lm(server, num_retries=2), MESSAGES)
    assert "after 3 attempts" in str(info.value)
    assert len(server.requests) == 3


async def test_unreachable_server_is_lm_connection_error(client: LMClient) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lm = LM("openai/m", api_base=f"http://127.0.0.1:{port}/v1", num_retries=1)
    with pytest.raises(LMConnectionError, match="could not reach"):
        await client.complete(lm, MESSAGES)


async def test_concurrent_calls_overlap(client: LMClient) -> None:
    async with ScriptedLM(Reply("slow", latency=0.2)) as server:
        lm = make_lm(server)
        results = await asyncio.gather(*(client.complete(lm, MESSAGES) for _ in range(10)))
    assert [r.text for r in results] == ["slow"] * 10
    starts = [r.started_at for r in server.requests]
    finishes = [r.finished_at or 0.0 for r in server.requests]
    assert max(starts) < min(finishes)  # all ten were in flight at once


async def test_connections_are_pooled(client: LMClient) -> None:
    async with ScriptedLM("ok") as server:
        for _ in range(5):
            await client.complete(make_lm(server), MESSAGES)
    assert len({r.connection for r in server.requests}) == 1


async def test_usage_is_accumulated(client: LMClient) -> None:
    script = [Reply("a", prompt_tokens=10, completion_tokens=2), Reply("b", 0, 2, "stop", 5, 1)]
    async with ScriptedLM(script) as server:
        lm = make_lm(server)
        first = await client.complete(lm, MESSAGES)
        second = await client.complete(lm, MESSAGES, n=2)
    assert first.usage == Usage(10, 2, 12)
    assert second.usage == Usage(5, 1, 6)
    assert client.usage == Usage(15, 3, 18) == first.usage + second.usage


async def test_missing_usage_counts_zero(client: LMClient) -> None:
    body = '{"choices": [{"message": {"role": "assistant", "content": null}}]}'
    async with ScriptedLM(Malformed(body)) as server:
        result = await client.complete(make_lm(server), MESSAGES)
    assert (result.texts, result.finish_reasons, result.usage) == ([""], [None], Usage())
    assert result.model == "test-model"


async def test_api_key_never_appears_in_reprs_or_errors(client: LMClient) -> None:
    echo = Status(401, message=f"Incorrect API key provided: {KEY}")
    async with ScriptedLM([echo, Malformed(f"not json {KEY}")]) as server:
        lm = make_lm(server)
        errors = []
        for _ in range(2):
            with pytest.raises(LMError) as info:
                await client.complete(lm, MESSAGES)
            errors.append(info.value)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    for text in [repr(lm), str(lm), repr(client)] + [f"{e} {e!r} {e.body}" for e in errors]:
        assert KEY not in text


async def test_api_key_and_base_from_the_environment(
    client: LMClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ScriptedLM("ok") as server:
        monkeypatch.setenv("OPENAI_API_KEY", "env-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        await client.complete(LM("openai/m"), MESSAGES)
    assert server.requests[0].headers["authorization"] == "Bearer env-key"


async def test_no_key_sends_no_authorization(
    client: LMClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with ScriptedLM("ok") as server:
        await client.complete(LM("openai/m", api_base=server.base_url), MESSAGES)
    assert "authorization" not in server.requests[0].headers


async def test_non_openai_provider_is_a_config_error(client: LMClient) -> None:
    with pytest.raises(ConfigError, match="OpenAI chat-completions"):
        await client.complete(LM("anthropic/claude"), MESSAGES)


async def test_unencodable_messages_are_an_lm_error(client: LMClient) -> None:
    async with ScriptedLM("ok") as server:
        with pytest.raises(LMError, match="could not encode"):
            await client.complete(make_lm(server), [{"role": "user", "content": object()}])
    assert server.requests == []


async def test_closed_client() -> None:
    client = LMClient()
    assert not client.closed
    await client.aclose()
    await client.aclose()
    assert client.closed
    assert "closed" in repr(client)
    with pytest.raises(RuntimeError, match="closed"):
        await client.complete(LM("openai/m"), MESSAGES)
    with pytest.raises(ConfigError):
        LMClient(max_connections=0)


async def test_cancelling_a_call_leaves_nothing_behind(client: LMClient) -> None:
    before = leftover_tasks()
    async with ScriptedLM(Hang()) as server:
        call = asyncio.ensure_future(client.complete(make_lm(server), MESSAGES))
        await server.wait_for_requests(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert leftover_tasks() <= before
