"""Durable state store in ``state.sqlite``: one table of namespaced pairs plus offsets.

A transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the store's connection
(:class:`~segflow.stream.state.sql.LockedTransaction` over :meth:`SqliteStateStore.write_session`):
several processes may share the file (SQLite serialises writers), and the consumer offsets,
the state and the changes outbox are committed together. Writes are buffered in the
transaction and flushed with ``executemany`` (before a scan, and at commit).

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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segflow.db.sqlite import connect, vacuum
from segflow.stream.state.base import Partition
from segflow.stream.state.sql import (
    CACHED_NAMESPACES,
    LockedReader,
    LockedTransaction,
    Pending,
    sql_partition,
)

if TYPE_CHECKING:
    from segflow.stream.state.optimistic import OptimisticTransaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""

__all__ = ["CACHED_NAMESPACES", "SqliteReader", "SqliteStateStore"]


class SqliteStateStore:
    """The processor's durable store. ``synchronous`` defaults to FULL (fsync per commit).

    Committed values of the point-read namespaces (``CACHED_NAMESPACES``) are cached in
    memory across transactions, up to ``cache_entries``; the cache is dropped whenever
    ``PRAGMA data_version`` shows that another connection (another process owning other
    partitions, an admin tool) committed since.
    """

    exclusive = False  # several processes may write the file

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

    def partition(self, partition: int) -> Partition[LockedTransaction]:
        return sql_partition(self, partition)

    def begin_global(self) -> LockedTransaction:
        return LockedTransaction(self, None)

    @contextlib.contextmanager
    def write_session(self) -> Iterator[SqliteSession]:
        """``BEGIN IMMEDIATE`` (the file's write lock) ... ``COMMIT`` (``ROLLBACK`` on error)."""
        with self.lock:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                self.validate_cache()
                yield SqliteSession(self.con)
                self.con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # nothing left to roll back
                    self.con.execute("ROLLBACK")
                raise
            self.data_version = int(self.con.execute("PRAGMA data_version").fetchone()[0])

    def snapshot(self) -> SqliteSnapshot:
        return SqliteSnapshot(self)

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


def _range_sql(reverse: bool, limit: int | None) -> str:
    sql = "SELECT key, value FROM kv WHERE ns = ? AND key >= ? AND key < ? ORDER BY key"
    sql += " DESC" if reverse else ""
    return sql + (f" LIMIT {int(limit)}" if limit is not None else "")


class SqliteReads:
    """The store's reads on one connection (see :class:`segflow.stream.state.sql.Reads`)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def get(self, ns: str, key: str) -> bytes | None:
        row = self.con.execute(
            "SELECT value FROM kv WHERE ns = ? AND key = ?", (ns, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, ns: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = dict.fromkeys(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value FROM kv WHERE ns = ? AND key IN ({marks})"
            for key, value in self.con.execute(sql, (ns, *chunk)).fetchall():
                out[key] = bytes(value)
        return out

    def range(
        self, ns: str, start: str, end: str, reverse: bool, limit: int | None
    ) -> list[tuple[str, bytes]]:
        rows = self.con.execute(_range_sql(reverse, limit), (ns, start, end)).fetchall()
        return [(k, bytes(v)) for k, v in rows]

    def offset(self, partition: int) -> int:
        row = self.con.execute(
            "SELECT next_offset FROM offsets WHERE partition = ?", (partition,)
        ).fetchone()
        return 0 if row is None else int(row[0])


class SqliteSession(SqliteReads):
    """Reads and writes inside the store's ``BEGIN IMMEDIATE`` transaction."""

    def write(self, pending: Pending, offsets: dict[int, int]) -> None:
        dels = [nk for nk, v in pending.items() if v is None]
        puts = [(ns, k, v) for (ns, k), v in pending.items() if v is not None]
        if dels:
            self.con.executemany("DELETE FROM kv WHERE ns = ? AND key = ?", dels)
        if puts:
            self.con.executemany(
                "INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)", puts
            )
        if offsets:
            self.con.executemany(
                "INSERT OR REPLACE INTO offsets (partition, next_offset) VALUES (?, ?)",
                sorted(offsets.items()),
            )


class SqliteSnapshot(SqliteReads):
    """One read transaction on a pooled connection (a WAL snapshot), without the write lock."""

    def __init__(self, store: SqliteStateStore) -> None:
        super().__init__(store.optimistic_connection())
        self.store = store
        self.con.execute("BEGIN")  # the snapshot starts with the first read
        self.open = True

    def close(self) -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(sqlite3.OperationalError):
                self.con.execute("ROLLBACK")
            self.store.release_optimistic(self.con)


class SqliteReader(LockedReader):
    """A separate read-only connection: sees committed state only; thread-safe via a lock."""

    def __init__(self, path: Path) -> None:
        self.con = connect(path, read_only=True)
        super().__init__(SqliteReads(self.con), self.con.close)
