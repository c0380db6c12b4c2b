"""Transactions written once for the SQL-backed stores (the SQLite file, PostgreSQL).

A SQL store (:class:`SqlStore`) offers two things, and every transaction is built on them:

- :meth:`SqlStore.write_session`: a *session* under the store's write lock (SQLite's
  ``BEGIN IMMEDIATE``; PostgreSQL's transaction-scoped advisory lock, which serialises the
  writers of every host), committed when the ``with`` block ends, rolled back if it raises.
  Its reads are live.
- :meth:`SqlStore.snapshot`: reads of one consistent snapshot without the write lock (a
  SQLite read transaction on a WAL file; a PostgreSQL ``REPEATABLE READ READ ONLY``
  transaction), for optimistic transactions (:mod:`segflow.stream.state.optimistic`).

:class:`LockedTransaction` is the pessimistic transaction: it holds a session from ``begin``
to ``commit``, buffers writes (flushed before a scan and at commit) and keeps the store's
cache of committed point reads (``CACHED_NAMESPACES``) valid: a key written in the
transaction is remembered in ``written`` and only enters the cache after the commit.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from segflow.stream.state.base import Offsets, Partition

Key = tuple[str, str]
Pending = dict[Key, bytes | None]

CACHED_NAMESPACES = frozenset({"owner", "profile", "alias", "meta"})


class Reads(Protocol):
    """Reads on one connection (a session or a snapshot)."""

    def get(self, ns: str, key: str) -> bytes | None: ...

    def get_many(self, ns: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        """Every key of ``keys`` (misses as ``None``), in a few queries."""
        ...

    def range(
        self, ns: str, start: str, end: str, reverse: bool, limit: int | None
    ) -> list[tuple[str, bytes]]: ...

    def offset(self, partition: int) -> int:
        """The committed next offset of ``partition`` (0 when never committed)."""
        ...


class Session(Reads, Protocol):
    """Reads and writes under the store's write lock, in one database transaction."""

    def write(self, pending: Pending, offsets: dict[int, int]) -> None:
        """Apply buffered writes (``None`` deletes) and offsets."""
        ...


class Snapshot(Reads, Protocol):
    def close(self) -> None:
        """End the snapshot (its connection goes back to the store's pool)."""
        ...


class SqlStore(Protocol):
    cache: dict[Key, bytes | None]

    def write_session(self) -> AbstractContextManager[Session]: ...

    def snapshot(self) -> Snapshot: ...


def overlay_scan(
    fetch: dict[tuple[str, str, str, bool, int | None], list[tuple[str, bytes]]],
    reads: Reads,
    pending: Pending,
    ns: str,
    start: str,
    end: str,
    reverse: bool,
    limit: int | None,
) -> list[tuple[str, bytes]]:
    """The committed rows of a range, read through ``reads`` (and remembered in ``fetch``, by
    range), overlaid with the transaction's ``pending`` writes; a limited range fetches
    ``limit`` more rows than asked for each pending write in it (deletes may drop rows).

    >>> class Rows:
    ...     def range(self, ns, start, end, reverse, limit):
    ...         return [("a", b"1"), ("b", b"2"), ("c", b"3")][:limit]
    >>> overlay_scan({}, Rows(), {("n", "a"): None, ("n", "bb"): b"x"}, "n", "", "z", False, 2)
    [('b', b'2'), ('bb', b'x')]
    """
    mine = {k: v for (n, k), v in pending.items() if n == ns and start <= k < end}
    wide = None if limit is None else limit + len(mine)
    spec = (ns, start, end, reverse, wide)
    if spec not in fetch:
        fetch[spec] = reads.range(ns, start, end, reverse, wide)
    rows = fetch[spec]
    if not mine:
        return list(rows[:limit])
    merged: dict[str, bytes | None] = dict(rows)
    if wide is not None and len(rows) == wide and rows:
        edge = rows[-1][0]  # committed rows past the edge were not read
        mine = {k: v for k, v in mine.items() if (k >= edge if reverse else k <= edge)}
    merged.update(mine)
    out = sorted(((k, v) for k, v in merged.items() if v is not None), reverse=reverse)
    return out[:limit]


def sql_partition(store: SqlStore, partition: int) -> Partition[LockedTransaction]:
    """A partition of a SQL store (its transactions hold the store's write lock)."""
    return Partition(functools.partial(LockedTransaction, store), partition)


class LockedTransaction(Offsets):
    """A pessimistic transaction: the store's write lock from construction to commit/rollback.

    ``partition`` is the transaction's own partition (``None``: a global transaction, whose
    offsets need an explicit partition).
    """

    def __init__(self, store: SqlStore, partition: int | None) -> None:
        self.store = store
        self.partition = partition
        self.pending: Pending = {}
        self.offsets: dict[int, int] = {}
        self.written: Pending = {}
        self.prefetched: Pending = {}  # bulk reads of namespaces the store does not cache
        self._stack = contextlib.ExitStack()
        self.session = self._stack.enter_context(store.write_session())
        self.open = True

    def get(self, ns: str, key: str) -> bytes | None:
        nk = (ns, key)
        if nk in self.pending:
            return self.pending[nk]
        if nk in self.written:
            return self.written[nk]
        cache = self.store.cache
        if nk in cache:
            return cache[nk]
        if nk in self.prefetched:
            return self.prefetched[nk]
        value = self.session.get(ns, key)
        if ns in CACHED_NAMESPACES:
            cache[nk] = value
        return value

    def prefetch(self, ns: str, keys: Iterable[str]) -> None:
        """Load many keys of ``ns`` in a few queries (misses remembered as missing): into the
        store's cache for the cached namespaces (their commits keep it current), for this
        transaction only for the others."""
        cache = self.store.cache if ns in CACHED_NAMESPACES else self.prefetched
        todo = sorted({k for k in keys if (ns, k) not in cache and (ns, k) not in self.pending})
        if not todo:
            return
        for key, value in self.session.get_many(ns, todo).items():
            if (ns, key) not in self.written:
                cache[(ns, key)] = value

    def set(self, ns: str, key: str, value: bytes) -> None:
        self.pending[(ns, key)] = value

    def delete(self, ns: str, key: str) -> None:
        self.pending[(ns, key)] = None

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        self._flush()
        return self.session.range(ns, start, end, reverse, limit)

    def committed(self, partition: int) -> int:
        return self.session.offset(partition)

    def _flush(self) -> None:
        if not self.pending:
            return
        self.written.update((nk, v) for nk, v in self.pending.items() if nk[0] in CACHED_NAMESPACES)
        self.session.write(self.pending, {})
        self.pending = {}

    def commit(self) -> None:
        try:
            self._flush()
            if self.offsets:
                self.session.write({}, self.offsets)
        except BaseException:
            self.rollback()
            raise
        self.open = False
        self._stack.close()  # commits (the session's with-block ends without an error)
        self.store.cache.update(self.written)

    def rollback(self) -> None:
        if not self.open:
            return
        self.open = False
        # the cache holds committed values only (keys written here are never cached before
        # commit), so a rollback leaves it valid
        self.pending.clear()
        with contextlib.suppress(_Rollback):
            self._stack.__exit__(_Rollback, _Rollback(), None)


class LockedReader:
    """A :class:`~segflow.stream.state.base.StateReader` over one connection's ``reads``
    (committed state only), serialised by a lock so that threads may share it."""

    def __init__(self, reads: Reads, close: Callable[[], None]) -> None:
        self._reads = reads
        self._close = close
        self.lock = threading.Lock()

    def get(self, ns: str, key: str) -> bytes | None:
        with self.lock:
            return self._reads.get(ns, key)

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        with self.lock:
            return self._reads.range(ns, start, end, reverse, limit)

    def close(self) -> None:
        with self.lock:
            self._close()


class _Rollback(Exception):
    """Thrown into a session's with-block to roll it back."""
