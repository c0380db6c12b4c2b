"""The processors' state in a shared PostgreSQL database (``shared.dsn``), for many hosts.

The same layout as ``state.sqlite`` — one table of namespaced pairs (``state_kv``) and one of
consumer offsets (``state_offsets``) — in the ``shared.schema`` schema, so processors on
different machines share identity, profiles and the changes outbox exactly as processes on
one machine share the SQLite file:

- **Writers are serialised** by a transaction-scoped advisory lock
  (``pg_advisory_xact_lock``) taken by every state transaction, as SQLite's
  ``BEGIN IMMEDIATE`` does for one file. Batches run *optimistically*
  (:mod:`segflow.stream.state.optimistic`): their reads come from a ``REPEATABLE READ READ
  ONLY`` snapshot without the lock; only the commit takes it, re-reads what the batch read and
  writes if nothing changed. Conflicting batches are redone, so the outcome equals a serial
  order of the batches (the multi-process tests check this against one embedded process).
- **Keys are UTF-8 bytes** (``BYTEA``): they compare byte-wise, i.e. by code point, as in
  SQLite and Python, so range scans (timelines, member index, outbox) return the same rows in
  the same order, and a key may hold any character (``TEXT`` refuses NUL).
- **The point-read cache** (``CACHED_NAMESPACES``) is dropped whenever the store's commit
  counter (``state_meta.version``, bumped under the lock by every commit that writes) moved
  since this process last held the lock: another host wrote. Commits that write nothing (an
  idle processor's timer tick) leave it alone, so idle processors neither write to the
  database nor drop each other's caches.

Durability is PostgreSQL's (a commit returns after its WAL flush with the default
``synchronous_commit = on``); backups are the database's (``pg_dump``), not ``segflow backup``.
Needs the ``postgres`` extra (psycopg 3).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from segflow.db.postgres import SharedStoreUnavailable, connect_shared
from segflow.stream.state.base import Partition
from segflow.stream.state.optimistic import OptimisticTransaction
from segflow.stream.state.sql import LockedReader, LockedTransaction, Pending, sql_partition

STATE_LOCK = 0x5E6F_2000  # pg_advisory_xact_lock key of the state store's writers

DDL = (
    """CREATE TABLE IF NOT EXISTS state_kv (
        ns TEXT NOT NULL, key BYTEA NOT NULL, value BYTEA NOT NULL,
        PRIMARY KEY (ns, key))""",
    "CREATE TABLE IF NOT EXISTS state_offsets (partition INTEGER PRIMARY KEY, "
    "next_offset BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state_meta (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
    # not ON CONFLICT: that waits for a writer's row lock (a reader opening mid-commit)
    "INSERT INTO state_meta SELECT 1, 0 WHERE NOT EXISTS (SELECT FROM state_meta)",
)


class PgReads:
    """The store's reads on one psycopg connection."""

    def __init__(self, con: Any) -> None:
        self.con = con

    def get(self, ns: str, key: str) -> bytes | None:
        row = self.con.execute(
            "SELECT value FROM state_kv WHERE ns = %s AND key = %s", (ns, key.encode())
        ).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, ns: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = dict.fromkeys(keys)
        rows = self.con.execute(
            "SELECT key, value FROM state_kv WHERE ns = %s AND key = ANY(%b)",
            (ns, [k.encode() for k in keys]),
        ).fetchall()
        for key, value in rows:
            out[bytes(key).decode()] = bytes(value)
        return out

    def range(
        self, ns: str, start: str, end: str, reverse: bool, limit: int | None
    ) -> list[tuple[str, bytes]]:
        sql = (
            "SELECT key, value FROM state_kv WHERE ns = %s AND key >= %s AND key < %s ORDER BY key"
        )
        sql += " DESC" if reverse else ""
        sql += f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self.con.execute(sql, (ns, start.encode(), end.encode())).fetchall()
        return [(bytes(k).decode(), bytes(v)) for k, v in rows]

    def offset(self, partition: int) -> int:
        row = self.con.execute(
            "SELECT next_offset FROM state_offsets WHERE partition = %s", (partition,)
        ).fetchone()
        return 0 if row is None else int(row[0])


class PgSession(PgReads):
    """Reads and writes in the transaction that holds the writers' advisory lock. Each kind of
    write is one statement over arrays (``unnest``), the arrays sent in binary (``%b``: the
    text format escapes every element, which cost more than the round trips)."""

    wrote = False  # whether this session wrote anything (the commit counter moves only then)

    def write(self, pending: Pending, offsets: dict[int, int]) -> None:
        self.wrote = self.wrote or bool(pending or offsets)
        dels = [nk for nk, v in pending.items() if v is None]
        puts = [(ns, k, v) for (ns, k), v in pending.items() if v is not None]
        if dels:
            self.con.execute(
                "DELETE FROM state_kv AS t USING unnest(%b::text[], %b::bytea[]) AS d(ns, key)"
                " WHERE t.ns = d.ns AND t.key = d.key",
                ([ns for ns, _ in dels], [k.encode() for _, k in dels]),
            )
        if puts:
            self.con.execute(
                "INSERT INTO state_kv (ns, key, value)"
                " SELECT * FROM unnest(%b::text[], %b::bytea[], %b::bytea[])"
                " ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value",
                ([p[0] for p in puts], [p[1].encode() for p in puts], [p[2] for p in puts]),
            )
        if offsets:
            parts = sorted(offsets.items())
            self.con.execute(
                "INSERT INTO state_offsets (partition, next_offset)"
                " SELECT * FROM unnest(%b::int[], %b::bigint[])"
                " ON CONFLICT (partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                ([p for p, _ in parts], [o for _, o in parts]),
            )


class PgSnapshot(PgReads):
    """A ``REPEATABLE READ READ ONLY`` transaction on a pooled connection (no lock taken)."""

    def __init__(self, store: PostgresStateStore) -> None:
        import psycopg

        for attempt in range(2):  # a pooled connection the server dropped fails at BEGIN
            super().__init__(store.snapshot_connection())
            try:
                self.con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                break
            except psycopg.OperationalError as exc:
                self.con.close()
                if attempt:
                    raise SharedStoreUnavailable(f"lost the shared state database: {exc}") from exc
        self.store = store
        self.open = True

    def close(self) -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(Exception):  # a broken connection is not pooled again
                self.con.execute("ROLLBACK")
            self.store.release_snapshot(self.con)


class PostgresStateStore:
    """The processor's state in PostgreSQL (see the module docstring).

    >>> PostgresStateStore.__name__  # needs a server: tests/unit/stream/test_state.py
    'PostgresStateStore'
    """

    exclusive = False  # processors on several hosts write it

    def __init__(self, dsn: str, schema: str = "segflow", *, cache_entries: int = 500_000) -> None:
        self.dsn = dsn
        self.schema = schema
        self.con = connect_shared(dsn, schema, ddl=DDL)
        self.lock = threading.RLock()
        self.cache: dict[tuple[str, str], bytes | None] = {}
        self.cache_entries = cache_entries
        self.version = -1
        self._snapshots: list[Any] = []  # idle snapshot connections
        self._opened: list[Any] = []  # every snapshot connection (closed by close())

    def partition(self, partition: int) -> Partition[LockedTransaction]:
        return sql_partition(self, partition)

    def begin_global(self) -> LockedTransaction:
        return LockedTransaction(self, None)

    def begin_optimistic(self) -> OptimisticTransaction:
        return OptimisticTransaction(self)

    @contextlib.contextmanager
    def write_session(self) -> Iterator[PgSession]:
        """A transaction holding the writers' lock; the cache is dropped if another process
        committed since this one last did. A lost connection raises
        :class:`~segflow.db.postgres.SharedStoreUnavailable` and is reopened by the next call."""
        import psycopg

        with self.lock:
            if self.con.closed or self.con.broken:
                self.con.close()
                self.con = connect_shared(self.dsn, self.schema)
            con = self.con
            try:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (STATE_LOCK,))
                    row = con.execute("SELECT version FROM state_meta WHERE id = 1").fetchone()
                    version = int(row[0])
                    if version != self.version or len(self.cache) > self.cache_entries:
                        self.cache.clear()
                    session = PgSession(con)
                    yield session
                    if session.wrote:  # an empty commit (an idle timer tick) moves nothing
                        row = con.execute(
                            "UPDATE state_meta SET version = version + 1 WHERE id = 1"
                            " RETURNING version"
                        ).fetchone()
                        version = int(row[0])
            except psycopg.OperationalError as exc:
                raise SharedStoreUnavailable(f"lost the shared state database: {exc}") from exc
            self.version = version

    def snapshot(self) -> PgSnapshot:
        return PgSnapshot(self)

    def snapshot_connection(self) -> Any:
        """A connection for a snapshot (from a small pool; give it back with
        :meth:`release_snapshot`)."""
        with self.lock:
            while self._snapshots:
                con = self._snapshots.pop()
                if not (con.closed or con.broken):
                    return con
                con.close()
            con = connect_shared(self.dsn, self.schema)
            self._opened.append(con)
            return con

    def release_snapshot(self, con: Any) -> None:
        with self.lock:
            self._snapshots.append(con)

    def reader(self) -> LockedReader:
        return postgres_reader(self.dsn, self.schema)

    def compact(self) -> None:
        """``VACUUM`` the state tables: erased rows' space is reclaimed (PostgreSQL rewrites
        pages lazily; ``VACUUM FULL`` would lock the processors out)."""
        with self.lock:
            self.con.execute("VACUUM state_kv")

    def close(self) -> None:
        with self.lock:
            self.con.close()
            for con in self._opened:
                con.close()
            self._snapshots.clear()
            self._opened.clear()


def postgres_reader(dsn: str, schema: str = "segflow") -> LockedReader:
    """A committed-state reader on its own connection (the API's profiles, the change feed)."""
    con = connect_shared(dsn, schema, ddl=DDL)
    return LockedReader(PgReads(con), con.close)
