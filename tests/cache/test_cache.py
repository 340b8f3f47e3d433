"""The response cache on its own: its memory bound, its disk, single flight, and what a
request claimed and never answered does to the identical ones waiting for it."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import msgspec
import pytest

from dspex.cache import ResponseCache, key_of
from dspex.cache._cache import key_frame, key_of_parts
from dspex.cache._stores import ENTRY_OVERHEAD, DiskStore, MemoryStore
from dspex.config import CacheConfig
from dspex.errors import ConfigError
from dspex.lm._wire import Message, body_prefix, params_suffix


def test_the_memory_store_drops_the_least_recently_used_past_its_bound() -> None:
    store = MemoryStore(3 * (2 + 10 + ENTRY_OVERHEAD))
    for key in (b"k1", b"k2", b"k3"):
        store.put(key, b"x" * 10)
    assert store.get(b"k1") == b"x" * 10  # now the most recently used
    store.put(b"k4", b"y" * 10)
    assert store.get(b"k2") is None  # the least recently used went
    assert [store.get(k) is not None for k in (b"k1", b"k3", b"k4")] == [True, True, True]
    assert store.bytes == 3 * (2 + 10 + ENTRY_OVERHEAD)
    assert len(store) == 3
    store.put(b"big", b"z" * 10_000)  # larger than the whole bound: not kept, nothing dropped
    assert store.get(b"big") is None
    assert len(store) == 3
    store.put(b"k1", b"short")  # a new reply for a key replaces the old one's bytes
    assert store.bytes == 2 * (2 + 10 + ENTRY_OVERHEAD) + 2 + 5 + ENTRY_OVERHEAD


@pytest.mark.parametrize(
    ("model", "params", "messages"),
    [
        ("gpt-4o-mini", {}, [{"role": "user", "content": "hi"}]),
        (
            "qwen",
            {"temperature": 0.0, "max_tokens": 4000, "n": None},
            [Message("system", 's\u00e9 "q" \n'), {"role": "user", "content": "u"}],
        ),
        (
            "m",
            {
                "temperature": 1.0,
                "n": 3,
                "response_format": {"type": "json_schema", "json_schema": {"b": 1, "a": [2]}},
                "zeta": "last",
                "aaa": "first",
            },
            [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url"}]}],
        ),
        ("m", {"max_completion_tokens": 16000}, []),
        (  # keys that are numbers, which JSON writes as strings
            "m",
            {"logit_bias": {50256: -100, 13: 5}},
            [{"role": "user", "content": "x", "extra": {2: "b", 10: "a"}}],
        ),
    ],
)
def test_a_key_from_the_request_s_pieces_is_the_key_of_its_body(
    model: str, params: dict[str, object], messages: list[object]
) -> None:
    """The native client keys a request from its pieces (no body to decode); the dspy side keys
    the body LiteLLM sent. The two must agree, whatever the order of keys in either."""
    body = body_prefix(model) + msgspec.json.encode(messages) + params_suffix(params)
    frame = key_frame(model, params)
    assert key_of_parts(frame, messages) == key_of(body)
    assert key_of_parts(frame, messages, 7) == key_of(body, 7) != key_of(body)


async def test_memory_stays_under_the_bound_while_100_000_distinct_replies_pass() -> None:
    """The bound counts what the entries really take: traced, the cache's memory stays within
    it (and the count it keeps is what is left after every eviction), each reply claimed and
    filled as a client does."""
    bound = 2 * 1024 * 1024
    cache = ResponseCache(CacheConfig(memory_mb=bound / (1024 * 1024)))
    reply = b'{"choices":[{"message":{"content":"%06d"}}]}' + b" " * 300
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        peak_over = 0
        for i in range(100_000):
            key = key_of(b'{"n": %d}' % i)
            assert await cache.claim(key) is None
            cache.fill(key, reply.replace(b"%06d", b"%06d" % i))
            if i % 5_000 == 0:
                peak_over = max(peak_over, tracemalloc.get_traced_memory()[0] - base)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert cache.memory.bytes <= bound
    assert max(used, peak_over) <= bound * 1.1  # the dict's own table is the slack
    assert 3_000 < len(cache.memory) < 4_000  # ~580 bytes an entry: about 3,600 kept
    assert cache.memory.get(key_of(b'{"n": 99999}')) is not None
    assert cache.memory.get(key_of(b'{"n": 0}')) is None
    assert (cache.misses, cache.hits, cache._flights) == (100_000, 0, {})


def test_the_disk_store_outlives_its_process_and_keeps_to_its_bound(tmp_path: Path) -> None:
    folder = str(tmp_path / "replies")
    code = (
        "from dspex.cache._stores import DiskStore\n"
        f"DiskStore({folder!r}, 10_000_000).put(b'key', b'a reply')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    store = DiskStore(folder, 2_000)
    assert store.get(b"key") == b"a reply"
    for i in range(100):
        store.put(b"k%03d" % i, b"v" * 100)
    assert store.bytes <= 2_000
    assert store.get(b"k099") == b"v" * 100
    assert store.get(b"k000") is None  # the oldest went first
    store.close()
    assert os.path.exists(os.path.join(folder, DiskStore.FILE))


def test_cache_config_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ConfigError, match=r"cache\.memory_mb"):
        CacheConfig(memory_mb=-1)
    with pytest.raises(ConfigError, match=r"cache\.disk_mb"):
        CacheConfig(disk_mb=0)
    with pytest.raises(ConfigError, match=r"cache\.disk"):
        CacheConfig(disk="  ")
    with pytest.raises(ConfigError, match="memroy_mb"):
        CacheConfig(memroy_mb=1)  # type: ignore[call-arg]
    assert not CacheConfig(memory_mb=0).enabled
    assert CacheConfig(memory_mb=0, disk="d").enabled


def test_keys_are_the_request_and_the_rollout_id() -> None:
    """The request's JSON whatever the order of its keys or its spacing (DSPy sorts them
    too); a rollout id keeps its own entries."""
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}'
    same = b'{"temperature": 0.5, "messages": [{"content": "hi", "role": "user"}], "model": "m"}'
    assert key_of(body) == key_of(same) == key_of({"model": "m", **msgspec.json.decode(same)})
    assert key_of(body) != key_of(body.replace(b"0.5", b"0.7"))
    assert key_of(body, 1) != key_of(body)
    assert key_of(body, 1) != key_of(body, 2)
    assert key_of(body, 0) != key_of(body)


async def test_identical_claims_in_flight_wait_for_the_first() -> None:
    cache = ResponseCache(CacheConfig())
    key = key_of(b'{"r": 1}')
    assert await cache.claim(key) is None  # the first sends
    waiters = [asyncio.ensure_future(cache.claim(key)) for _ in range(49)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiters)
    cache.fill(key, b"reply")
    assert await asyncio.gather(*waiters) == [b"reply"] * 49
    assert (cache.hits, cache.misses) == (49, 1)


async def test_a_claim_that_ends_with_no_reply_passes_to_one_waiter() -> None:
    """The sender failed (or was cancelled): one waiter sends instead, the others wait for it;
    none gets the first one's failure."""
    cache = ResponseCache(CacheConfig())
    key = key_of(b'{"r": 1}')
    assert await cache.claim(key) is None
    waiters = [asyncio.ensure_future(cache.claim(key)) for _ in range(3)]
    await asyncio.sleep(0)
    cache.fill(key, None)
    await asyncio.sleep(0.01)
    done = [w for w in waiters if w.done()]
    assert len(done) == 1
    assert done[0].result() is None
    cache.fill(key, b"reply")
    assert [await w for w in waiters if w is not done[0]] == [b"reply", b"reply"]


async def test_an_owner_that_is_gone_gives_its_claims_back() -> None:
    cache = ResponseCache(CacheConfig())
    key = key_of(b'{"r": 1}')
    assert await cache.claim(key, owner="worker-1") is None
    waiter = asyncio.ensure_future(cache.claim(key))
    await asyncio.sleep(0)
    cache.abandon("worker-2")
    await asyncio.sleep(0.01)
    assert not waiter.done()
    cache.abandon("worker-1")
    assert await asyncio.wait_for(waiter, 1) is None  # the waiter sends it now


async def test_a_cancelled_waiter_leaves_the_flight_alone() -> None:
    cache = ResponseCache(CacheConfig())
    key = key_of(b'{"r": 1}')
    assert await cache.claim(key) is None
    waiter = asyncio.ensure_future(cache.claim(key))
    await asyncio.sleep(0)
    waiter.cancel()
    other = asyncio.ensure_future(cache.claim(key))
    await asyncio.sleep(0)
    cache.fill(key, b"reply")
    assert await other == b"reply"


async def test_the_disk_cache_answers_a_new_cache_on_the_same_folder(tmp_path: Path) -> None:
    config = CacheConfig(disk=str(tmp_path))
    first = ResponseCache(config)
    key = key_of(b'{"r": 1}')
    assert await first.claim(key) is None
    first.fill(key, b"reply")
    first.close()  # its writes are done
    second = ResponseCache(config)
    try:
        assert await second.claim(key) == b"reply"
        assert second.hits == 1
        assert second.memory.get(key) == b"reply"
    finally:
        second.close()
