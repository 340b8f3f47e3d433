"""Where the response cache keeps replies: in memory (an LRU bounded in bytes) and on disk
(SQLite, one file, outliving the process)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import OrderedDict

#: Bytes an entry costs beyond its key and reply: the two bytes objects' headers and the
#: ordered dict's slot and link (measured with tracemalloc on CPython 3.11: 180-200).
ENTRY_OVERHEAD = 200


class MemoryStore:
    """Replies by key, least recently used first out once their bytes pass ``max_bytes``
    (keys, replies and :data:`ENTRY_OVERHEAD` per entry counted). Not thread-safe: its owner
    (the cache) uses it from one event loop."""

    __slots__ = ("_entries", "bytes", "max_bytes")

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> bytes | None:
        """The reply kept for ``key`` (now the most recently used), or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        """Keep ``value`` for ``key``, dropping the least recently used past the bound (a reply
        larger than the whole bound is not kept)."""
        size = len(key) + len(value) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old) + ENTRY_OVERHEAD
        self._entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            dropped, reply = self._entries.popitem(last=False)
            self.bytes -= len(dropped) + len(reply) + ENTRY_OVERHEAD

    def clear(self) -> None:
        """Forget every reply."""
        self._entries.clear()
        self.bytes = 0


class DiskStore:
    """Replies by key in ``folder/responses.sqlite3``; past ``max_bytes`` the oldest written go
    first. Blocking: its owner calls it from a thread of its own (one at a time, a lock
    guards the connection). Any process may open the same folder (SQLite's locking)."""

    FILE = "responses.sqlite3"

    def __init__(self, folder: str, max_bytes: int):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, self.FILE)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies "
                "(key BLOB PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL, "
                "written REAL NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS replies_written ON replies (written)")
        self.bytes = self._size()

    def _size(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM replies").fetchone()
        return int(row[0])

    def get(self, key: bytes) -> bytes | None:
        """The reply kept for ``key``, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: bytes, value: bytes) -> None:
        """Keep ``value`` for ``key``; drop the oldest replies past the bound."""
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        with self._lock, self._db:
            db = self._db
            old = db.execute("SELECT size FROM replies WHERE key = ?", (key,)).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)",
                (key, value, size, time.time()),
            )
            self.bytes += size - (old[0] if old is not None else 0)
            while self.bytes > self.max_bytes:
                oldest = db.execute(
                    "SELECT key, size FROM replies ORDER BY written LIMIT 64"
                ).fetchall()
                if not oldest:
                    break
                dropped = []
                for old_key, old_size in oldest:  # just enough of them
                    if self.bytes <= self.max_bytes:
                        break
                    dropped.append((old_key,))
                    self.bytes -= old_size
                db.executemany("DELETE FROM replies WHERE key = ?", dropped)

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
