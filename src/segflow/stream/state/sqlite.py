"""Durable state store in ``state.sqlite``: one table of namespaced pairs plus offsets.

A transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the store's connection: several
processes may share the file (SQLite serialises writers), and the consumer offsets, the state
and the changes outbox are committed together. Writes are buffered in the transaction and
flushed with ``executemany`` (before a scan, and at commit).

>>> import tempfile, os
>>> store = SqliteStateStore(os.path.join(tempfile.mkdtemp(), "state.sqlite"))
>>> tx = store.partition(1).begin(); tx.set("ns", "k", b"v"); tx.set_offset(7); tx.commit()
>>> store.reader().get("ns", "k"), store.partition(1).begin().get_offset()
(b'v', 7)
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from segflow.sqlite import connect, vacuum

if TYPE_CHECKING:
    from segflow.stream.state.optimistic import OptimisticTransaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


CACHED_NAMESPACES = frozenset({"owner", "profile", "alias", "meta"})


class SqliteStateStore:
    """The processor's durable store. ``synchronous`` defaults to FULL (fsync per commit).

    Committed values of the point-read namespaces (``CACHED_NAMESPACES``) are cached in
    memory across transactions, up to ``cache_entries``; the cache is dropped whenever
    ``PRAGMA data_version`` shows that another connection (another process owning other
    partitions, an admin tool) committed since.
    """

    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", cache_entries: int = 500_000
    ) -> None:
        self.path = Path(path)
        self.con = connect(self.path, synchronous=synchronous)
        self.con.executescript(_SCHEMA)
        self.lock = threading.RLock()
        self.cache: dict[tuple[str, str], bytes | None] = {}
        self.cache_entries = cache_entries
        self.data_version = -1
        self._optimistic: list[sqlite3.Connection] = []  # idle optimistic-read connections

    def validate_cache(self) -> None:
        """Drop the cache if anyone else committed since we last looked (call in a transaction)."""
        version = int(self.con.execute("PRAGMA data_version").fetchone()[0])
        if version != self.data_version or len(self.cache) > self.cache_entries:
            self.cache.clear()
            self.data_version = version

    def partition(self, partition: int) -> SqlitePartition:
        return SqlitePartition(self, partition)

    def begin_global(self) -> SqliteTransaction:
        return SqliteTransaction(self, None)

    def begin_optimistic(self) -> OptimisticTransaction:
        """A transaction that reads without the write lock and validates at commit
        (:mod:`segflow.stream.state.optimistic`)."""
        from segflow.stream.state.optimistic import OptimisticTransaction

        return OptimisticTransaction(self)

    def optimistic_connection(self) -> sqlite3.Connection:
        """A connection for an optimistic transaction's reads (from a small pool: one per
        transaction open at a time; give it back with :meth:`release_optimistic`)."""
        with self.lock:
            if self._optimistic:
                return self._optimistic.pop()
        return connect(self.path, synchronous="OFF")

    def release_optimistic(self, con: sqlite3.Connection) -> None:
        with self.lock:
            self._optimistic.append(con)

    def reader(self) -> SqliteReader:
        return SqliteReader(self.path)

    def compact(self) -> None:
        """VACUUM the file and truncate its write-ahead file, between two transactions (the
        processor waits meanwhile): erased state leaves no bytes behind."""
        with self.lock:
            vacuum(self.con)
            self.cache.clear()

    def close(self) -> None:
        self.con.close()
        for con in self._optimistic:
            con.close()


class SqlitePartition:
    def __init__(self, store: SqliteStateStore, partition: int) -> None:
        self.store = store
        self._partition = partition

    @property
    def partition(self) -> int:
        return self._partition

    def begin(self) -> SqliteTransaction:
        return SqliteTransaction(self.store, self._partition)


def _range_sql(reverse: bool, limit: int | None) -> str:
    sql = "SELECT key, value FROM kv WHERE ns = ? AND key >= ? AND key < ? ORDER BY key"
    sql += " DESC" if reverse else ""
    return sql + (f" LIMIT {int(limit)}" if limit is not None else "")


class SqliteTransaction:
    """Holds the store's lock and an open ``BEGIN IMMEDIATE`` until commit or rollback."""

    def __init__(self, store: SqliteStateStore, partition: int | None) -> None:
        self.store = store
        self.con = store.con
        self.partition = partition
        self.pending: dict[tuple[str, str], bytes | None] = {}
        self.offsets: dict[int, int] = {}
        store.lock.acquire()
        try:
            self.con.execute("BEGIN IMMEDIATE")
            store.validate_cache()
        except BaseException:
            store.lock.release()
            raise
        self.open = True
        self.written: dict[tuple[str, str], bytes | None] = {}

    def get(self, ns: str, key: str) -> bytes | None:
        nk = (ns, key)
        if nk in self.pending:
            return self.pending[nk]
        if nk in self.written:
            return self.written[nk]
        cache = self.store.cache
        if nk in cache:
            return cache[nk]
        row = self.con.execute("SELECT value FROM kv WHERE ns = ? AND key = ?", nk).fetchone()
        value = None if row is None else bytes(row[0])
        if ns in CACHED_NAMESPACES:
            cache[nk] = value
        return value

    def prefetch(self, ns: str, keys: Iterable[str]) -> None:
        """Load many keys of ``ns`` in a few queries (misses remembered as missing)."""
        cache = self.store.cache
        todo = sorted({k for k in keys if (ns, k) not in cache and (ns, k) not in self.pending})
        for start in range(0, len(todo), 500):
            chunk = todo[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value FROM kv WHERE ns = ? AND key IN ({marks})"
            found = dict(self.con.execute(sql, (ns, *chunk)).fetchall())
            for key in chunk:
                if (ns, key) not in self.written:
                    value = found.get(key)
                    cache[(ns, key)] = None if value is None else bytes(value)

    def set(self, ns: str, key: str, value: bytes) -> None:
        self.pending[(ns, key)] = value

    def delete(self, ns: str, key: str) -> None:
        self.pending[(ns, key)] = None

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        self._flush()
        rows = self.con.execute(_range_sql(reverse, limit), (ns, start, end)).fetchall()
        return [(k, bytes(v)) for k, v in rows]

    def get_offset(self, partition: int | None = None) -> int:
        partition = self.partition if partition is None else partition
        if partition in self.offsets:
            return self.offsets[partition]
        if partition is None:
            raise ValueError("a global transaction needs an explicit partition")
        row = self.con.execute(
            "SELECT next_offset FROM offsets WHERE partition = ?", (partition,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def set_offset(self, offset: int, partition: int | None = None) -> None:
        partition = self.partition if partition is None else partition
        if partition is None:
            raise ValueError("a global transaction needs an explicit partition")
        self.offsets[partition] = offset

    def _flush(self) -> None:
        if not self.pending:
            return
        self.written.update((nk, v) for nk, v in self.pending.items() if nk[0] in CACHED_NAMESPACES)
        puts = [(ns, k, v) for (ns, k), v in self.pending.items() if v is not None]
        dels = [(ns, k) for (ns, k), v in self.pending.items() if v is None]
        if dels:
            self.con.executemany("DELETE FROM kv WHERE ns = ? AND key = ?", dels)
        if puts:
            self.con.executemany(
                "INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)", puts
            )
        self.pending.clear()

    def commit(self) -> None:
        try:
            self._flush()
            if self.offsets:
                self.con.executemany(
                    "INSERT OR REPLACE INTO offsets (partition, next_offset) VALUES (?, ?)",
                    sorted(self.offsets.items()),
                )
            self.con.execute("COMMIT")
            self.store.data_version = int(self.con.execute("PRAGMA data_version").fetchone()[0])
        except BaseException:
            self.rollback()
            raise
        self.store.cache.update(self.written)
        self._close()

    def rollback(self) -> None:
        if not self.open:
            return
        with contextlib.suppress(sqlite3.OperationalError):  # no transaction left to roll back
            self.con.execute("ROLLBACK")
        # the cache holds committed values only (keys written in this transaction are never
        # cached before commit), so a rollback leaves it valid
        self.pending.clear()
        self._close()

    def _close(self) -> None:
        self.open = False
        self.store.lock.release()


class SqliteReader:
    """A separate read-only connection: sees committed state only; thread-safe via a lock."""

    def __init__(self, path: Path) -> None:
        self.con = connect(path, read_only=True)
        self.lock = threading.Lock()

    def get(self, ns: str, key: str) -> bytes | None:
        with self.lock:
            row = self.con.execute(
                "SELECT value FROM kv WHERE ns = ? AND key = ?", (ns, key)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        with self.lock:
            rows = self.con.execute(_range_sql(reverse, limit), (ns, start, end)).fetchall()
        return [(k, bytes(v)) for k, v in rows]

    def close(self) -> None:
        self.con.close()
