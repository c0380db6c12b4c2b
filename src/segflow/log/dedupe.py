"""The dedupe index of the embedded log: which ``(source_id, message_id)`` were appended
within the window.

On disk it is an **append-only** table, ``dedupe_log(id, key, received_at_ms)``: appending
costs the same however large the window is (a B-tree keyed by message id would rewrite pages
all over the tree on every commit — measured in BENCHMARKS.md). The lookup structure is a dict
in memory, loaded at open and caught up at the start of every write transaction with the rows
other processes (``segflow import``) appended. Old rows are pruned by id ranges.

``key`` is a 128-bit BLAKE2b of ``(source_id, message_id)``: a false duplicate would need a
128-bit collision. Memory: about 150 bytes per message id in the window.

>>> import sqlite3
>>> con = sqlite3.connect(":memory:", isolation_level=None)
>>> index = DedupeIndex(con, window_ms=1_000)
>>> k = dedupe_key("src", "m1")
>>> index.is_duplicate(k, 10)
False
>>> index.stage([(k, 10)]); index.applied()
>>> index.is_duplicate(k, 900), index.is_duplicate(k, 1_011)
(True, False)
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import deque

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS dedupe_log(id INTEGER PRIMARY KEY, key BLOB NOT NULL,"
    " received_at_ms INTEGER NOT NULL)"
)
_MARK_EVERY = 10_000


def dedupe_key(source_id: str, message_id: str) -> bytes:
    """The 128-bit dedupe key of a message.

    >>> len(dedupe_key("src", "m1")), dedupe_key("src", "m1") == dedupe_key("src", "m1")
    (16, True)
    """
    return hashlib.blake2b(f"{source_id}\0{message_id}".encode(), digest_size=16).digest()


class DedupeIndex:
    """See the module docstring. Used only by the log's writer (under its write lock)."""

    def __init__(self, con: sqlite3.Connection, *, window_ms: int) -> None:
        self._con = con
        self._window_ms = window_ms
        self._seen: dict[bytes, int] = {}
        self._last_id = 0
        self._pruned_to = 0
        self._marks: deque[tuple[int, int]] = deque()  # (last id, newest received_at) so far
        self._newest = 0
        self._staged: list[tuple[bytes, int]] = []
        con.execute(_SCHEMA)
        self.catch_up()

    def __len__(self) -> int:
        return len(self._seen)

    def catch_up(self) -> None:
        """Read rows appended since we last looked (by this or another process)."""
        rows = self._con.execute(
            "SELECT id, key, received_at_ms FROM dedupe_log WHERE id > ? ORDER BY id",
            (self._last_id,),
        )
        count = 0
        for row_id, key, received in rows:
            self._remember(key, received)
            self._last_id = row_id
            count += 1
            if count % _MARK_EVERY == 0:
                self._marks.append((row_id, self._newest))
        if count % _MARK_EVERY:
            self._marks.append((self._last_id, self._newest))

    def _remember(self, key: bytes, received: int) -> None:
        if received >= self._seen.get(key, received):
            self._seen[key] = received
        self._newest = max(self._newest, received)

    def is_duplicate(self, key: bytes, received_at_ms: int) -> bool:
        """Was ``key`` appended within the window before ``received_at_ms``?"""
        stored = self._seen.get(key)
        return stored is not None and received_at_ms - stored <= self._window_ms

    def stage(self, rows: list[tuple[bytes, int]]) -> None:
        """Write ``(key, received_at_ms)`` rows in the caller's transaction."""
        if rows:
            self._con.executemany("INSERT INTO dedupe_log(key, received_at_ms) VALUES(?,?)", rows)
            self._staged.extend(rows)

    def applied(self) -> None:
        """The transaction committed: remember the staged rows."""
        if not self._staged:
            return
        for key, received in self._staged:
            self._remember(key, received)
        self._staged = []
        self._last_id = int(self._con.execute("SELECT max(id) FROM dedupe_log").fetchone()[0])
        self._marks.append((self._last_id, self._newest))

    def discarded(self) -> None:
        """The transaction rolled back: forget the staged rows."""
        self._staged = []

    def prune(self) -> int:
        """Delete rows older than the window (in the caller's transaction); returns how many."""
        horizon = self._newest - self._window_ms
        upto = self._pruned_to
        while len(self._marks) > 1 and self._marks[0][1] < horizon:
            upto = self._marks.popleft()[0]
        if upto <= self._pruned_to:
            return 0
        rows = self._con.execute(
            "SELECT key, received_at_ms FROM dedupe_log WHERE id > ? AND id <= ?",
            (self._pruned_to, upto),
        )
        for key, received in rows:
            if self._seen.get(key) == received:
                del self._seen[key]
        deleted = self._con.execute("DELETE FROM dedupe_log WHERE id <= ?", (upto,)).rowcount
        self._pruned_to = upto
        return int(deleted)
