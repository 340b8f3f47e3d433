"""``ResponseCache``: the runtime's LM replies by request, shared by both implementations, with
single flight (identical requests in flight at once send one)."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from dspex import telemetry
from dspex.cache._stores import DiskStore, MemoryStore
from dspex.errors import ConfigError

if TYPE_CHECKING:
    from dspex.config import CacheConfig

__all__ = [
    "CALL_CACHE",
    "CacheReport",
    "CacheUse",
    "Claims",
    "ResponseCache",
    "key_frame",
    "key_of",
    "key_of_parts",
]

logger = logging.getLogger("dspex.cache")
_MB = 1024 * 1024


class CacheUse(msgspec.Struct, frozen=True):
    """A call's own cache settings: ``cache`` (None: its LM's ``cache``), ``rollout_id``
    (replies are kept apart per rollout id, as DSPy keeps them) and ``refresh`` (send the
    requests, and keep their replies, instead of answering from the cache: a fallback's
    attempt, which must not get the reply native just failed on)."""

    cache: bool | None = None
    rollout_id: int | None = None
    refresh: bool = False


#: The current call's cache settings when it has any (set by the module actor in the call's
#: task; a shadow run sets ``CacheUse(cache=False)``: it must not be answered from the cache).
CALL_CACHE: contextvars.ContextVar[CacheUse | None] = contextvars.ContextVar(
    "dspex_call_cache", default=None
)


_canonical = msgspec.json.Encoder(order="sorted")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder()


def _canonical_json(value: Any) -> bytes:
    """``value`` as JSON with sorted keys."""
    try:
        return _canonical.encode(value)
    except TypeError:  # a dict keyed by numbers (logit_bias), which JSON writes as strings
        return _canonical.encode(_decode.decode(_encode(value)))


def key_of(request: bytes | dict[str, Any], rollout_id: int | None = None) -> bytes:
    """The cache key of a chat-completions request (its body as sent, or that body decoded):
    the SHA-256 of its JSON with sorted keys, as DSPy hashes its requests (so the order a
    client writes keys in does not count), with the rollout id if any. The API key and base
    URL are not in a body, so, as in DSPy's keys, they do not count."""
    body = _decode.decode(request) if isinstance(request, bytes) else request
    return _digest(hashlib.sha256(_canonical.encode(body)), rollout_id)


_MESSAGES = "\x00dspex messages\x00"
_MESSAGES_JSON = _canonical.encode(_MESSAGES)


def key_frame(model: str, params: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The canonical JSON (as :func:`key_of` writes it) of a request to ``model`` with
    ``params`` (None values left out, as in the body), before and after its messages: what
    :func:`key_of_parts` needs, computed once per LM and parameters."""
    request = {k: v for k, v in params.items() if v is not None}
    request["model"] = model
    request["messages"] = _MESSAGES
    before, _, after = _canonical_json(request).partition(_MESSAGES_JSON)
    return before, after


def key_of_parts(
    frame: tuple[bytes, bytes], messages: Sequence[Any], rollout_id: int | None = None
) -> bytes:
    """:func:`key_of` of the request of ``frame`` (:func:`key_frame`) and ``messages``,
    with no body to decode: only the messages are encoded (dicts or msgspec Structs)."""
    digest = hashlib.sha256(frame[0])
    digest.update(_canonical_json(messages))
    digest.update(frame[1])
    return _digest(digest, rollout_id)


def _digest(digest: hashlib._Hash, rollout_id: int | None) -> bytes:
    if rollout_id is not None:
        digest.update(b"\x00rollout_id=%d" % rollout_id)
    return digest.digest()


class CacheReport(msgspec.Struct, frozen=True):
    """The response cache in ``metrics().cache``: LM requests answered from it (``hits``) and
    not (``misses``), the replies kept in memory (``entries``, ``bytes`` of ``max_bytes``),
    and the on-disk folder (None: none)."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int
    disk: str | None


class Claims(Protocol):
    """What a cache's user needs (:class:`ResponseCache`, or a dspy worker's link to its
    service's): :meth:`ResponseCache.claim` and :meth:`ResponseCache.fill`."""

    async def claim(self, key: bytes) -> bytes | None:
        """The reply kept for ``key``, or None: then the caller sends the request and fills."""
        ...

    def fill(self, key: bytes, reply: bytes | None) -> None:
        """The reply to a claimed request (None: there is none to keep)."""
        ...


class _Flight:
    """A request being sent for a key: who sends it, and its end."""

    __slots__ = ("done", "owner")

    def __init__(self, owner: Hashable | None):
        self.owner = owner
        self.done = asyncio.Event()


class ResponseCache:
    """LM replies (chat.completion JSON, as the server sent them) by :func:`key_of`, in memory
    and, with ``CacheConfig.disk``, on disk. One per runtime, used from its event loop.

    :meth:`claim` answers a request from the cache, or makes its caller the one that sends it:
    identical requests claimed meanwhile wait for that one's :meth:`fill` (single flight); if
    it ends with no reply (an error, a cancelled call, a worker that died), one waiter sends
    it instead. Disk reads and writes run in a thread of the cache's own; a read or write
    that fails (a damaged file, a full disk) is logged and counts as a miss, or is not kept.

    :raises ConfigError: ``CacheConfig.disk`` cannot be opened (not a folder this process can
        create and write, or a file there that is not a cache).
    """

    def __init__(self, config: CacheConfig):
        self.config = config
        self.memory = MemoryStore(int(config.memory_mb * _MB))
        self.disk: DiskStore | None = None
        self._io: ThreadPoolExecutor | None = None
        if config.disk is not None:
            try:
                self.disk = DiskStore(config.disk, int(config.disk_mb * _MB))
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(
                    f"Config.cache.disk={config.disk!r} cannot hold the response cache "
                    f"({type(exc).__name__}: {exc}); give a folder this process can create "
                    f"and write, or remove {DiskStore.FILE} there if it is damaged"
                ) from exc
            self._io = ThreadPoolExecutor(1, thread_name_prefix="dspex-cache")
        self._flights: dict[bytes, _Flight] = {}
        self.hits = 0
        self.misses = 0

    def report(self) -> CacheReport:
        """The cache's figures now."""
        return CacheReport(
            self.hits,
            self.misses,
            len(self.memory),
            self.memory.bytes,
            self.memory.max_bytes,
            self.config.disk,
        )

    def _hit(self) -> None:
        self.hits += 1
        telemetry.cache_hits.add(1)

    def get(self, key: bytes) -> bytes | None:
        """The reply kept in memory for ``key`` (a hit), or None (not a miss: :meth:`claim`
        it then)."""
        reply = self.memory.get(key)
        if reply is not None:
            self._hit()
        return reply

    async def claim(self, key: bytes, owner: Hashable | None = None) -> bytes | None:
        """The reply kept for ``key`` (a hit), or None (a miss): the caller must then send the
        request and call :meth:`fill` with its reply, or None, whatever happens. ``owner``
        names the sender for :meth:`abandon`. A waiter cancelled meanwhile just stops waiting."""
        while True:
            reply = self.memory.get(key)
            if reply is not None:
                self._hit()
                return reply
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
        flight = self._flights[key] = _Flight(owner)
        if self.disk is not None:
            try:
                reply = await self._in_thread(self.disk.get, key)
            except Exception as exc:  # an unreadable disk is a miss, not the call's failure
                logger.warning("could not read the disk cache: %s", exc)
                reply = None
            except BaseException:  # cancelled: its waiters send their own
                self.fill(key, None)
                raise
            if reply is not None:
                self.memory.put(key, reply)
                self._end(key, flight)
                self._hit()
                return reply
        self.misses += 1
        telemetry.cache_misses.add(1)
        return None

    def fill(self, key: bytes, reply: bytes | None) -> None:
        """End the request claimed for ``key``: keep ``reply`` (None: nothing to keep) and wake
        those waiting for it."""
        if reply is not None:
            self.memory.put(key, reply)
            if self.disk is not None:
                asyncio.get_running_loop().run_in_executor(self._io, self._write, key, reply)
        flight = self._flights.get(key)
        if flight is not None:
            self._end(key, flight)

    def abandon(self, owner: Hashable) -> None:
        """End every request ``owner`` claimed with no reply (its worker is gone)."""
        for key, flight in list(self._flights.items()):
            if flight.owner == owner:
                self._end(key, flight)

    def _end(self, key: bytes, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.done.set()

    def _write(self, key: bytes, reply: bytes) -> None:
        assert self.disk is not None
        try:
            self.disk.put(key, reply)
        except Exception as exc:  # a full disk, a locked file: the reply stays in memory
            logger.warning("could not write a reply to the disk cache: %s", exc)

    def _in_thread(
        self, fn: Callable[[bytes], bytes | None], key: bytes
    ) -> Awaitable[bytes | None]:
        return asyncio.get_running_loop().run_in_executor(self._io, fn, key)

    def close(self) -> None:
        """Let the pending disk writes finish and close the file (idempotent)."""
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None
        if self.disk is not None:
            self.disk.close()
