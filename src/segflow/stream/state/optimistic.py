"""Optimistic transactions on a SQL store: process without the write lock, validate at commit.

A pessimistic transaction (:class:`~segflow.stream.state.sql.LockedTransaction`) holds the
store's write lock from begin to commit, so processors sharing the store (each owning some
partitions) run their batches one after another. An optimistic transaction reads committed
state through a :meth:`~segflow.stream.state.sql.SqlStore.snapshot` (SQLite: a read
transaction on a WAL file; PostgreSQL: ``REPEATABLE READ``; every read sees the same state, so
the batch's logic never meets a half-applied merge) without the write lock, and remembers
every value it read (misses included), every range it scanned and every offset. ``commit``
then takes the write lock (:meth:`~segflow.stream.state.sql.SqlStore.write_session`), re-reads all
of them and compares: if one changed, another processor committed a conflicting batch
meanwhile (the same profile or identifier, or the same partition's offset) and
:class:`StateConflict` is raised, nothing written; otherwise the writes go in under the lock.
Commits are serialised by the lock, and a commit is valid only if everything it read was
still current, so every outcome equals *some* serial order of the batches (serializability):
identity resolution across partitions stays as correct as in one process, on one host or on
many (the PostgreSQL store's lock is the database's).

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
from collections.abc import Callable, Iterable

from segflow.errors import TransientError
from segflow.stream.state.sql import (
    CACHED_NAMESPACES,
    Key,
    Pending,
    Reads,
    SqlStore,
    overlay_scan,
)

Scan = tuple[str, str, str, bool, int | None]


class StateConflict(TransientError):
    """Another transaction committed a change to something this one read: redo the batch."""

    code = "state_conflict"


class OptimisticTransaction:
    """See the module docstring. Same interface as ``StateTransaction`` plus :meth:`defer`."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.snapshot = store.snapshot()  # one snapshot for every read: consistent, if stale
        self.live: Reads | None = None  # the commit's session, once validated: reads are live
        self.reads: dict[Key, bytes | None] = {}
        self.scans: dict[Scan, list[tuple[str, bytes]]] = {}
        self.offset_reads: dict[int, int] = {}
        self.pending: Pending = {}
        self.offsets: dict[int, int] = {}
        self.hooks: list[Callable[[], None]] = []

    # -- reads (recorded) ----------------------------------------------------------------------
    def get(self, ns: str, key: str) -> bytes | None:
        nk = (ns, key)
        if nk in self.pending:
            return self.pending[nk]
        if self.live is not None:
            return self.live.get(ns, key)
        if nk not in self.reads:
            self.reads[nk] = self.snapshot.get(ns, key)
        return self.reads[nk]

    def prefetch(self, ns: str, keys: Iterable[str]) -> None:
        todo = sorted({k for k in keys if (ns, k) not in self.reads})
        if todo:
            for key, value in self.snapshot.get_many(ns, todo).items():
                self.reads[(ns, key)] = value

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Committed pairs of the range (recorded) overlaid with this transaction's writes."""
        return overlay_scan(self.scans, self.snapshot, self.pending, ns, start, end, reverse, limit)

    def get_offset(self, partition: int | None = None) -> int:
        if partition is None:
            raise ValueError("an optimistic transaction needs an explicit partition")
        if partition in self.offsets:
            return self.offsets[partition]
        if partition not in self.offset_reads:
            self.offset_reads[partition] = self.snapshot.offset(partition)
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
    def _valid(self, live: Reads) -> bool:
        for partition, seen in self.offset_reads.items():
            if live.offset(partition) != seen:
                return False
        by_ns: dict[str, list[str]] = {}
        for ns, key in self.reads:
            by_ns.setdefault(ns, []).append(key)
        for ns, keys in by_ns.items():
            now = live.get_many(ns, keys)
            if any(now[k] != self.reads[(ns, k)] for k in keys):
                return False
        return all(
            live.range(ns, start, end, reverse, limit) == scanned
            for (ns, start, end, reverse, limit), scanned in self.scans.items()
        )

    def commit(self) -> None:
        """Validate and write under the store's lock; raises :class:`StateConflict`."""
        try:
            with self.store.write_session() as session:
                if not self._valid(session):
                    raise StateConflict("another processor changed what this batch read")
                self.live = session
                for hook in self.hooks:
                    hook()
                session.write(self.pending, self.offsets)
        finally:
            self.live = None
            self.snapshot.close()
        self.store.cache.update(
            (nk, v) for nk, v in self.pending.items() if nk[0] in CACHED_NAMESPACES
        )

    def rollback(self) -> None:
        self.pending.clear()
        with contextlib.suppress(Exception):  # the snapshot's connection may be gone
            self.snapshot.close()
