"""Optimistic transactions on ``state.sqlite``: process without the write lock, validate at commit.

A pessimistic transaction (:class:`~segflow.stream.state.sqlite.SqliteTransaction`) holds
SQLite's write lock from ``BEGIN IMMEDIATE`` to ``COMMIT``, so processors sharing the file
(each owning some partitions) run their batches one after another. An optimistic transaction
reads committed state on its own connection, in one read transaction (a WAL snapshot: every
read sees the same state, so the batch's logic never meets a half-applied merge) without the
write lock, and remembers every value it read (misses included), every range it scanned and
every offset. ``commit`` then takes the
write lock, re-reads all of them and compares: if one changed, another processor committed a
conflicting batch meanwhile (the same profile or identifier, or the same partition's offset)
and :class:`StateConflict` is raised, nothing written; otherwise the writes go in under the
lock. Commits are serialised by SQLite, and a commit is valid only if everything it read was
still current, so every outcome equals *some* serial order of the batches (serializability):
identity resolution across partitions stays as correct as in one process.

Work that must see the state at commit time (the outbox and record sequence counters, which
every batch increments) is registered with :meth:`OptimisticTransaction.defer` and runs under
the lock after validation, reading the live state without recording.

>>> import tempfile, os
>>> from segflow.stream.state.sqlite import SqliteStateStore
>>> store = SqliteStateStore(os.path.join(tempfile.mkdtemp(), "state.sqlite"))
>>> a, b = OptimisticTransaction(store), OptimisticTransaction(store)
>>> a.get("owner", "user_id:u1"), b.get("owner", "user_id:u1")
(None, None)
>>> a.set("owner", "user_id:u1", b"p1"); a.commit()
>>> b.set("owner", "user_id:u1", b"p2"); b.commit()
Traceback (most recent call last):
...
segflow.stream.state.optimistic.StateConflict: another processor changed what this batch read
>>> store.close()
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from segflow.errors import TransientError
from segflow.stream.state.sqlite import CACHED_NAMESPACES, _range_sql

if TYPE_CHECKING:
    from segflow.stream.state.sqlite import SqliteStateStore

Key = tuple[str, str]
Scan = tuple[str, str, str, bool, int | None]


class StateConflict(TransientError):
    """Another transaction committed a change to something this one read: redo the batch."""

    code = "state_conflict"


class OptimisticTransaction:
    """See the module docstring. Same interface as ``StateTransaction`` plus :meth:`defer`."""

    def __init__(self, store: SqliteStateStore) -> None:
        self.store = store
        self.con = store.optimistic_connection()
        self.reads: dict[Key, bytes | None] = {}
        self.scans: dict[Scan, list[tuple[str, bytes]]] = {}
        self.offset_reads: dict[int, int] = {}
        self.pending: dict[Key, bytes | None] = {}
        self.offsets: dict[int, int] = {}
        self.hooks: list[Callable[[], None]] = []
        self.live = False  # True under the lock after validation: deferred work reads live
        self.con.execute("BEGIN")  # one snapshot for every read: consistent, if maybe stale
        self._reading = True

    # -- reads (recorded) ----------------------------------------------------------------------
    def get(self, ns: str, key: str) -> bytes | None:
        nk = (ns, key)
        if nk in self.pending:
            return self.pending[nk]
        if self.live:
            row = self.store.con.execute(
                "SELECT value FROM kv WHERE ns = ? AND key = ?", nk
            ).fetchone()
            return None if row is None else bytes(row[0])
        if nk not in self.reads:
            row = self.con.execute("SELECT value FROM kv WHERE ns = ? AND key = ?", nk).fetchone()
            self.reads[nk] = None if row is None else bytes(row[0])
        return self.reads[nk]

    def prefetch(self, ns: str, keys: Iterable[str]) -> None:
        todo = sorted({k for k in keys if (ns, k) not in self.reads})
        for key, value in _bulk(self.con, ns, todo).items():
            self.reads[(ns, key)] = value

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Committed pairs of the range (recorded) overlaid with this transaction's writes."""
        mine = {k: v for (n, k), v in self.pending.items() if n == ns and start <= k < end}
        wide = None if limit is None else limit + len(mine)  # deletes may drop committed rows
        spec = (ns, start, end, reverse, wide)
        if spec not in self.scans:
            rows = self.con.execute(_range_sql(reverse, wide), (ns, start, end)).fetchall()
            self.scans[spec] = [(k, bytes(v)) for k, v in rows]
        if not mine:
            return list(self.scans[spec][:limit])
        merged: dict[str, bytes | None] = dict(self.scans[spec])
        if wide is not None and len(self.scans[spec]) == wide and self.scans[spec]:
            edge = self.scans[spec][-1][0]  # committed rows past the edge were not read
            mine = {k: v for k, v in mine.items() if (k >= edge if reverse else k <= edge)}
        merged.update(mine)
        out = sorted(((k, v) for k, v in merged.items() if v is not None), reverse=reverse)
        return out[:limit]

    def get_offset(self, partition: int | None = None) -> int:
        if partition is None:
            raise ValueError("an optimistic transaction needs an explicit partition")
        if partition in self.offsets:
            return self.offsets[partition]
        if partition not in self.offset_reads:
            self.offset_reads[partition] = _offset(self.con, partition)
        return self.offset_reads[partition]

    # -- writes (buffered) ---------------------------------------------------------------------
    def set(self, ns: str, key: str, value: bytes) -> None:
        self.pending[(ns, key)] = value

    def delete(self, ns: str, key: str) -> None:
        self.pending[(ns, key)] = None

    def set_offset(self, offset: int, partition: int | None = None) -> None:
        if partition is None:
            raise ValueError("an optimistic transaction needs an explicit partition")
        self.offsets[partition] = offset

    def defer(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at commit, under the lock, after validation (reads are then live)."""
        self.hooks.append(hook)

    # -- commit --------------------------------------------------------------------------------
    def _valid(self, con: sqlite3.Connection) -> bool:
        for partition, seen in self.offset_reads.items():
            if _offset(con, partition) != seen:
                return False
        by_ns: dict[str, list[str]] = {}
        for ns, key in self.reads:
            by_ns.setdefault(ns, []).append(key)
        for ns, keys in by_ns.items():
            now = _bulk(con, ns, keys)
            if any(now[k] != self.reads[(ns, k)] for k in keys):
                return False
        for (ns, start, end, reverse, limit), scanned in self.scans.items():
            rows = con.execute(_range_sql(reverse, limit), (ns, start, end)).fetchall()
            if [(k, bytes(v)) for k, v in rows] != scanned:
                return False
        return True

    def commit(self) -> None:
        """Validate and write under the store's lock; raises :class:`StateConflict`."""
        store = self.store
        with store.lock:
            con = store.con
            con.execute("BEGIN IMMEDIATE")
            try:
                store.validate_cache()
                if not self._valid(con):
                    raise StateConflict("another processor changed what this batch read")
                self.live = True
                for hook in self.hooks:
                    hook()
                _write(con, self.pending, self.offsets)
                con.execute("COMMIT")
                store.data_version = int(con.execute("PRAGMA data_version").fetchone()[0])
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):
                    con.execute("ROLLBACK")
                raise
            finally:
                self._end_read()
            store.cache.update(
                (nk, v) for nk, v in self.pending.items() if nk[0] in CACHED_NAMESPACES
            )

    def rollback(self) -> None:
        self.pending.clear()
        self._end_read()

    def _end_read(self) -> None:
        if self._reading:
            self._reading = False
            with contextlib.suppress(sqlite3.OperationalError):
                self.con.execute("ROLLBACK")
            self.store.release_optimistic(self.con)


def _bulk(con: sqlite3.Connection, ns: str, keys: list[str]) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = dict.fromkeys(keys)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT key, value FROM kv WHERE ns = ? AND key IN ({marks})"
        for key, value in con.execute(sql, (ns, *chunk)).fetchall():
            out[key] = bytes(value)
    return out


def _offset(con: sqlite3.Connection, partition: int) -> int:
    row = con.execute(
        "SELECT next_offset FROM offsets WHERE partition = ?", (partition,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _write(
    con: sqlite3.Connection, pending: dict[Key, bytes | None], offsets: dict[int, int]
) -> None:
    dels = [nk for nk, v in pending.items() if v is None]
    puts = [(ns, k, v) for (ns, k), v in pending.items() if v is not None]
    if dels:
        con.executemany("DELETE FROM kv WHERE ns = ? AND key = ?", dels)
    if puts:
        con.executemany("INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)", puts)
    if offsets:
        con.executemany(
            "INSERT OR REPLACE INTO offsets (partition, next_offset) VALUES (?, ?)",
            sorted(offsets.items()),
        )
