"""ScriptedLM, exercised with a plain aiohttp client (the LM client has its own tests)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from dspex.errors import ConfigError, ScriptError
from dspex.testing import (
    Action,
    Drop,
    Hang,
    Malformed,
    RecordedRequest,
    Reply,
    Script,
    ScriptedLM,
    Status,
    respond,
)

MESSAGES = [
    {"role": "system", "content": "You answer questions."},
    {"role": "user", "content": "What is the capital of France?"},
]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "my-model", "messages": MESSAGES, **extra}


async def post(
    session: aiohttp.ClientSession, lm: ScriptedLM, **extra: Any
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(f"{lm.base_url}/chat/completions", json=chat_body(**extra)) as r:
        return r.status, dict(r.headers), await r.read()


def leftover_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_reply_is_an_openai_chat_completion() -> None:
    async with ScriptedLM("Paris") as lm, aiohttp.ClientSession() as session:
        assert lm.base_url == f"http://127.0.0.1:{lm.port}/v1"
        status, headers, content = await post(session, lm)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    reply = json.loads(content)
    assert reply["object"] == "chat.completion"
    assert reply["id"].startswith("chatcmpl-")
    assert isinstance(reply["created"], int)
    assert reply["model"] == "my-model"
    assert reply["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    usage = reply["usage"]
    assert usage["prompt_tokens"] > len(MESSAGES)
    assert usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_gzip_compresses_whole_replies_for_clients_that_take_it() -> None:
    async with ScriptedLM("Paris", gzip=True) as lm, aiohttp.ClientSession() as session:
        async with session.post(
            f"{lm.base_url}/chat/completions", json=chat_body(), auto_decompress=False
        ) as r:
            encoding, raw = r.headers.get("Content-Encoding"), await r.read()
        plain = {"Accept-Encoding": "identity"}
        async with session.post(
            f"{lm.base_url}/chat/completions", json=chat_body(), headers=plain
        ) as r:
            refused, content = r.headers.get("Content-Encoding"), await r.read()
    assert encoding == "gzip"  # aiohttp asks for gzip by default
    assert json.loads(gzip.decompress(raw))["choices"][0]["message"]["content"] == "Paris"
    assert refused is None
    assert json.loads(content)["choices"][0]["message"]["content"] == "Paris"


async def test_requests_are_recorded() -> None:
    async with ScriptedLM("ok") as lm, aiohttp.ClientSession() as session:
        await post(session, lm, temperature=0.5)
    (request,) = lm.requests
    assert isinstance(request, RecordedRequest)
    assert (request.method, request.path, request.index) == ("POST", "/v1/chat/completions", 0)
    assert request.messages == MESSAGES
    assert request.model == "my-model"
    assert request.body == chat_body(temperature=0.5)
    assert request.headers["content-type"] == "application/json"
    assert request.action == Reply("ok")
    assert request.finished_at is not None
    assert request.finished_at >= request.started_at


async def test_sequence_is_consumed_in_order_and_exhaustion_fails_the_test() -> None:
    answers = []

    async def run() -> None:
        async with ScriptedLM(["first", Reply("second")]) as lm, aiohttp.ClientSession() as s:
            answers.extend([await post(s, lm) for _ in range(3)])

    with pytest.raises(ScriptError, match="ran out of actions after 2"):
        await run()
    texts = [json.loads(c)["choices"][0]["message"]["content"] for _, _, c in answers[:2]]
    assert texts == ["first", "second"]
    assert answers[2][0] == 500
    assert b"ran out of actions" in answers[2][2]


async def test_non_strict_server_keeps_errors_without_raising() -> None:
    async with ScriptedLM([], strict=False) as lm, aiohttp.ClientSession() as session:
        status, _, _ = await post(session, lm)
    assert status == 500
    (error,) = lm.errors
    assert error == (
        "the script ran out of actions after 0; "
        "request #0 (POST /v1/chat/completions) had no answer"
    )


async def test_callable_script_sees_the_request() -> None:
    def script(request: RecordedRequest) -> str:
        return str(request.messages[-1]["content"]).upper()

    async with ScriptedLM(script) as lm, aiohttp.ClientSession() as session:
        _, _, content = await post(session, lm)
    assert json.loads(content)["choices"][0]["message"]["content"] == (
        "WHAT IS THE CAPITAL OF FRANCE?"
    )


async def test_async_callable_script_can_wait_for_the_test() -> None:
    release = asyncio.Event()

    async def script(request: RecordedRequest) -> Reply:
        await release.wait()
        return Reply("released")

    async with ScriptedLM(script) as lm, aiohttp.ClientSession() as session:
        call = asyncio.ensure_future(post(session, lm))
        await lm.wait_for_requests(1)
        assert not call.done()
        release.set()
        status, _, content = await call
    assert status == 200
    assert b"released" in content


async def test_script_that_raises_answers_500_and_fails_at_exit() -> None:
    def script(request: RecordedRequest) -> str:
        raise ValueError("bug in the test")

    statuses = []

    async def run() -> None:
        async with ScriptedLM(script) as lm, aiohttp.ClientSession() as session:
            statuses.append((await post(session, lm))[0])

    with pytest.raises(ScriptError, match="bug in the test"):
        await run()
    assert statuses == [500]


async def test_script_can_be_replaced() -> None:
    async with ScriptedLM("one") as lm, aiohttp.ClientSession() as session:
        await post(session, lm)
        lm.script = Status(503)
        status, _, _ = await post(session, lm)
    assert status == 503
    assert [r.action for r in lm.requests] == [Reply("one"), Status(503)]


@pytest.mark.parametrize(
    ("reply", "request_n", "texts"),
    [
        (Reply("x"), 3, ["x", "x", "x"]),
        (Reply("x", n=2), None, ["x", "x"]),
        (Reply(["a", "b"]), None, ["a", "b"]),
    ],
)
async def test_n_choices(reply: Reply, request_n: int | None, texts: list[str]) -> None:
    extra = {} if request_n is None else {"n": request_n}
    async with ScriptedLM(reply) as lm, aiohttp.ClientSession() as session:
        _, _, content = await post(session, lm, **extra)
    choices = json.loads(content)["choices"]
    assert [c["message"]["content"] for c in choices] == texts
    assert [c["index"] for c in choices] == list(range(len(texts)))


async def test_explicit_token_counts() -> None:
    reply = Reply("x", prompt_tokens=11, completion_tokens=7)
    async with ScriptedLM(reply) as lm, aiohttp.ClientSession() as session:
        _, _, content = await post(session, lm)
    usage = json.loads(content)["usage"]
    assert usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


async def test_status_with_retry_after_and_error_body() -> None:
    script = [Status(429, retry_after=2), Status(503, body="down"), Status(500, retry_after=0.5)]
    async with ScriptedLM(script) as lm, aiohttp.ClientSession() as session:
        answers = [await post(session, lm) for _ in range(3)]
    (s1, h1, c1), (s2, h2, c2), (s3, h3, _) = answers
    assert (s1, h1["Retry-After"]) == (429, "2")
    error = json.loads(c1)["error"]
    assert error["type"] == "rate_limit_exceeded"
    assert "429" in error["message"]
    assert (s2, c2, "Retry-After" in h2) == (503, b"down", False)
    assert (s3, h3["Retry-After"]) == (500, "0.5")


async def test_malformed_bodies() -> None:
    script = [Malformed(), Malformed('{"object": "chat.completion"}', status=200)]
    async with ScriptedLM(script) as lm, aiohttp.ClientSession() as session:
        answers = [await post(session, lm) for _ in range(2)]
    assert answers[0][0] == 200
    assert answers[0][2] == b"this is not JSON"
    assert answers[1][2] == b'{"object": "chat.completion"}'


async def test_drop_closes_the_connection_without_an_answer() -> None:
    async with ScriptedLM(Drop()) as lm, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, lm)
    assert lm.requests[0].action == Drop()
    assert lm.requests[0].finished_at is not None


async def test_hang_until_the_client_gives_up_then_stop_is_clean() -> None:
    before = leftover_tasks()
    lm = ScriptedLM(Hang())
    async with lm, aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                f"{lm.base_url}/chat/completions",
                json=chat_body(),
                timeout=aiohttp.ClientTimeout(total=0.05),
            ):
                pass
    assert lm.requests[0].finished_at is None
    assert leftover_tasks() <= before


async def test_stop_with_hung_delayed_and_awaiting_requests_does_not_hang() -> None:
    before = leftover_tasks()
    never = asyncio.Event()

    async def waits_forever(request: RecordedRequest) -> Reply:
        await never.wait()
        return Reply("never")

    scripts = iter([Hang(), Reply("late", latency=60), waits_forever])

    def script(request: RecordedRequest) -> Any:
        action = next(scripts)
        return action(request) if callable(action) else action

    lm = ScriptedLM(script)
    async with aiohttp.ClientSession() as session:
        await lm.start()
        calls = [asyncio.ensure_future(post(session, lm)) for _ in range(3)]
        await lm.wait_for_requests(3)
        await asyncio.wait_for(lm.stop(), timeout=5)
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, aiohttp.ClientError) for r in results), results
    assert leftover_tasks() <= before


async def test_concurrent_requests_are_served_concurrently() -> None:
    async with ScriptedLM(Reply("slow", latency=0.2)) as lm, aiohttp.ClientSession() as session:
        await asyncio.gather(*(post(session, lm) for _ in range(10)))
    starts = [r.started_at for r in lm.requests]
    finishes = [r.finished_at for r in lm.requests]
    assert len(starts) == 10
    assert None not in finishes
    # Every request was received before the first one was answered: they overlapped.
    assert max(starts) < min(f for f in finishes if f is not None)


async def test_a_hung_request_does_not_delay_another() -> None:
    script: Iterator[Action] = iter([Hang(), Reply("fast")])
    async with ScriptedLM(lambda request: next(script)) as lm, aiohttp.ClientSession() as session:
        hung = asyncio.ensure_future(post(session, lm))
        await lm.wait_for_requests(1)
        status, _, content = await post(session, lm)
        assert status == 200
        assert b"fast" in content
        assert not hung.done()
        hung.cancel()


async def test_keep_alive_reuses_one_connection() -> None:
    async with ScriptedLM("ok") as lm, aiohttp.ClientSession() as session:
        for _ in range(3):
            await post(session, lm)
        async with session.get(f"{lm.base_url}/models") as r:
            models = await r.json()
    assert len({r.connection for r in lm.requests}) == 1
    assert models == {
        "object": "list",
        "data": [{"id": "scripted-lm", "object": "model", "created": 0, "owned_by": "dspex"}],
    }


async def test_unknown_paths_and_methods() -> None:
    async with ScriptedLM("ok") as lm, aiohttp.ClientSession() as session:
        async with session.get(f"{lm.url}/v1/embeddings") as r:
            assert r.status == 404
        async with session.get(f"{lm.base_url}/chat/completions") as r:
            assert r.status == 405
    assert [r.action for r in lm.requests] == [None, None]


async def raw_exchange(lm: ScriptedLM, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(lm.host, lm.port)
    writer.write(data)
    await writer.drain()
    response = await reader.read()  # until the server closes
    writer.close()
    await writer.wait_closed()
    return response


def raw_request(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"{head}\r\n"
    ).encode() + body


async def test_pipelined_requests_are_answered_in_order() -> None:
    body = json.dumps(chat_body()).encode()
    async with ScriptedLM(["one", "two"]) as lm:
        data = raw_request(body) + raw_request(body, "Connection: close")
        response = await raw_exchange(lm, data)
    assert response.count(b"HTTP/1.1 200 OK") == 2
    assert response.index(b'"one"') < response.index(b'"two"')
    assert response.rstrip().endswith(b"}")


async def test_bodies_and_pipelined_requests_larger_than_a_read_arrive_whole() -> None:
    # the connection reads 64 KiB at a time into an area it keeps: a body several times that,
    # and a second request behind it in the same writes, are put together before parsing
    big = chat_body(messages=[{"role": "user", "content": "x" * 300_000}])
    body = json.dumps(big).encode()
    async with ScriptedLM(["one", "two"]) as lm:
        data = raw_request(body) + raw_request(body, "Connection: close")
        response = await asyncio.wait_for(raw_exchange(lm, data), 30)  # lost bytes: no answer
        assert [r.body for r in lm.requests] == [big, big]
    assert response.count(b"HTTP/1.1 200 OK") == 2


async def test_chunked_request_bodies_are_refused_clearly() -> None:
    async with ScriptedLM("ok") as lm:
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        response = await raw_exchange(lm, request)
    assert response.startswith(b"HTTP/1.1 411 ")
    assert b"Content-Length" in response


async def test_expect_100_continue() -> None:
    body = json.dumps(chat_body()).encode()
    async with ScriptedLM("ok") as lm:
        reader, writer = await asyncio.open_connection(lm.host, lm.port)
        writer.write(raw_request(body, "Expect: 100-continue", "Connection: close")[: -len(body)])
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 200 OK")


async def test_wait_for_requests_fails_when_the_server_stops() -> None:
    lm = ScriptedLM("ok")
    await lm.start()
    waiter = asyncio.ensure_future(lm.wait_for_requests(1))
    stop = asyncio.ensure_future(lm.stop())  # tasks start in order: the waiter registers first
    await stop
    with pytest.raises(ScriptError, match="stopped before 1 requests"):
        await waiter
    with pytest.raises(ScriptError, match="not running"):
        await lm.wait_for_requests(1)


async def test_not_running() -> None:
    lm = ScriptedLM("ok")
    with pytest.raises(RuntimeError, match="not running"):
        _ = lm.base_url
    await lm.stop()  # stopping a server that never started is fine


@pytest.mark.parametrize(
    "make",
    [
        lambda: Reply("x", latency=-1),
        lambda: Reply("x", n=0),
        lambda: Reply([]),
        lambda: Reply(["a"], n=2),
        lambda: Status(42),
        lambda: Drop(latency=float("nan")),
    ],
)
def test_invalid_actions_are_config_errors(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()


async def test_fixed_steps_and_callables_mix_in_one_script() -> None:
    async def later(request: RecordedRequest) -> str:
        return "awaited"

    script: Script = [Status(500), respond(answer="Paris"), "text", later, lambda r: Drop()]
    async with ScriptedLM(script) as lm, aiohttp.ClientSession() as session:
        statuses = [(await post(session, lm))[0] for _ in range(4)]
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, lm)
    assert statuses == [500, 200, 200, 200]
    assert [r.action for r in lm.requests] == [
        Status(500),
        Reply("[[ ## completed ## ]]"),  # respond() on a request that asks for no fields
        Reply("text"),
        Reply("awaited"),
        Drop(),
    ]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (["ok", 42], r"script item #1 is 42; expected a reply text, Reply, Status"),
        ((Status(503), None), "script item #1 is None"),
        ([Reply("a"), [Reply("b")]], r"script item #1 is \[Reply"),
        (42, "a ScriptedLM script is a reply text, an action, a callable .* got 42"),
    ],
)
def test_a_bad_script_is_refused_when_assigned(script: Any, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        ScriptedLM(script)


async def test_a_refused_script_leaves_the_previous_one_in_place() -> None:
    async with ScriptedLM("before") as lm, aiohttp.ClientSession() as session:
        with pytest.raises(ScriptError, match="script item #2"):
            lm.script = [Status(500), respond(answer="x"), {"answer": "x"}]  # type: ignore[list-item]
        _, _, content = await post(session, lm)
    assert json.loads(content)["choices"][0]["message"]["content"] == "before"


async def test_an_endless_script_is_checked_step_by_step() -> None:
    def steps() -> Iterator[Any]:
        yield "ok"
        yield 42

    statuses = []

    async def run() -> None:
        async with ScriptedLM(steps()) as lm, aiohttp.ClientSession() as session:
            statuses.extend([(await post(session, lm))[0] for _ in range(2)])

    with pytest.raises(ScriptError, match="script item #1 is 42"):
        await run()
    assert statuses == [200, 500]


async def test_a_callable_giving_a_value_of_wrong_type_is_reported() -> None:
    with pytest.raises(ScriptError, match="the script gave 42; expected Reply"):
        async with ScriptedLM(lambda request: 42) as lm, aiohttp.ClientSession() as session:  # type: ignore[arg-type]
            await post(session, lm)
