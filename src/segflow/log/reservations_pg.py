"""The dedupe reservation table on the shared PostgreSQL database (``shared.dsn``).

The same table, states and steps as :mod:`segflow.log.reservations` (reserve -> produce ->
confirm/release; read that docstring first), in ``dedupe_reservations`` of the shared schema,
so that collectors on several hosts deduplicate against one table.

**Concurrency: one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` per batch, in READ
COMMITTED.** Every key of the batch is upserted by one statement (one round trip, its own
transaction): an absent key is inserted as pending; an existing row is taken over (set pending
with the new reservation time) only if :func:`~segflow.log.reservations.classify` would call
it FRESH, a rule the ``WHERE`` clause states in SQL — the window has passed since its
``received_at_ms``, or it is pending past ``pending_timeout_ms``. ``RETURNING`` names the keys
this statement reserved: those, and only those, are FRESH. Why this is safe with collectors
racing on the same key: the primary key's unique index lets one of two concurrent inserts win;
the other waits for the winner's commit, then evaluates the ``WHERE`` clause on the row as the
winner committed it (PostgreSQL locks the conflicting row and reads its latest version, even
one newer than the statement's snapshot), finds it pending and recent, and leaves it. The same
holds for two collectors taking over one expired row: the second sees the first's update.

The alternatives cost more on the hot path: a ``SELECT ... FOR UPDATE`` then an upsert needs a
transaction held open across two or three round trips (and locks nothing for absent keys);
SERIALIZABLE needs the same, and its predicate locks on index pages make concurrent batches of
*different* keys fail and retry.

For keys not reserved, the statement reads their rows from its snapshot to tell DUPLICATE from
IN_FLIGHT. The snapshot can be older than the row the upsert locked (a concurrent collector
committed in between); where it gives no answer or an out-of-date FRESH, the key is IN_FLIGHT,
the conservative outcome (the client retries in a second and then gets the settled one).

Every statement locks its rows in key order (the upsert inserts them sorted; confirm and
release lock them with ``SELECT ... ORDER BY key FOR UPDATE`` first, ~20% of a confirm's time),
so batches sharing keys do not deadlock; a deadlock or serialization failure that still happens
(say, under an isolation level forced by the server's configuration) is retried.

A key repeated within one call is reserved with its first copy's ``received_at_ms``; its other
copies are DUPLICATE when it was reserved, else classified from the snapshot like the first.
Stored rows older than two windows are deleted every
:data:`~segflow.log.reservations.PRUNE_EVERY` calls (``FOR UPDATE SKIP LOCKED``: prunes running
on several collectors skip each other's rows instead of waiting). A lost connection raises
:class:`~segflow.db.postgres.SharedStoreUnavailable` and is reopened on the next call.

Cost (``benchmarks/reservations.py``, server on loopback with fsync on, docs/scaling.md): a
reserve of 50 keys ~1.5 ms, of 2,500 keys ~38 ms; the confirm about as much again. Across a
network, add one round trip to each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from segflow.db.postgres import SharedStoreUnavailable, connect_shared
from segflow.log.reservations import PRUNE_EVERY, Reservation, ReservedRow, classify

TABLE = "dedupe_reservations"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE}(key BYTEA PRIMARY KEY, received_at_ms BIGINT NOT NULL,"
    " reserved_at_ms BIGINT NOT NULL, stored BOOLEAN NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_received ON {TABLE}(received_at_ms)",
)
# The FRESH branch of classify() for an existing row r, the proposed row being EXCLUDED.
_RESERVE = f"""
WITH batch AS (
    SELECT * FROM unnest(%(keys)s::bytea[], %(received)s::bigint[]) AS b(key, received_at_ms)
), reserved AS (
    INSERT INTO {TABLE} AS r (key, received_at_ms, reserved_at_ms, stored)
    SELECT key, received_at_ms, %(now)s, false FROM batch ORDER BY key
    ON CONFLICT (key) DO UPDATE
    SET received_at_ms = EXCLUDED.received_at_ms, reserved_at_ms = EXCLUDED.reserved_at_ms,
        stored = false
    WHERE EXCLUDED.received_at_ms - r.received_at_ms > %(window)s
       OR (NOT r.stored AND EXCLUDED.reserved_at_ms - r.reserved_at_ms >= %(timeout)s)
    RETURNING key
)
SELECT b.key, s.received_at_ms, s.reserved_at_ms, s.stored
FROM batch b LEFT JOIN {TABLE} s ON s.key = b.key
WHERE NOT EXISTS (SELECT 1 FROM reserved WHERE reserved.key = b.key)
"""
# confirm and release lock their rows in key order too (a plain UPDATE ... WHERE key = ANY(...)
# locks them in the order of the heap, and could deadlock with a reserve of the same keys)
_LOCKED = (
    f"WITH locked AS (SELECT key FROM {TABLE} WHERE key = ANY(%s::bytea[]) ORDER BY key FOR UPDATE)"
)
_CONFIRM = f"{_LOCKED} UPDATE {TABLE} t SET stored = true FROM locked WHERE t.key = locked.key"
_RELEASE = f"{_LOCKED} DELETE FROM {TABLE} t USING locked WHERE t.key = locked.key AND NOT t.stored"
_PRUNE = f"""
DELETE FROM {TABLE} WHERE key IN (
    SELECT key FROM {TABLE} WHERE stored AND received_at_ms < %s FOR UPDATE SKIP LOCKED
)
"""
_ATTEMPTS = 5  # for deadlocks and serialization failures (the statement was rolled back)
_T = TypeVar("_T")


class PgReservationStore:
    """:class:`~segflow.log.reservations.ReservationStore` on PostgreSQL (see the module
    docstring). Thread-safe; shared by the collector processes of every host.

    ``dsn`` and ``schema`` are ``shared.dsn`` and ``shared.schema``; the table is created when
    missing. Raises :class:`~segflow.db.postgres.SharedStoreUnavailable` when the server cannot
    be reached.
    """

    def __init__(
        self, dsn: str, *, schema: str, window_ms: int, pending_timeout_ms: int = 30_000
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.window_ms = window_ms
        self.pending_timeout_ms = pending_timeout_ms
        self._lock = threading.Lock()
        self._calls = 0
        self._closed = False
        self._con: Any = self._connect()

    def _connect(self) -> Any:
        con = connect_shared(self.dsn, self.schema, ddl=_DDL)
        # the safety argument above is READ COMMITTED's: never inherit a stricter default
        con.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return con

    def reserve(self, keys: Sequence[tuple[bytes, int]], *, now_ms: int) -> list[Reservation]:
        """Reserve ``(key, received_at_ms)`` pairs (one statement, committed)."""
        first: dict[bytes, int] = {}  # a repeated key is reserved with its first copy
        for key, received in keys:
            first.setdefault(key, received)
        params = {
            "keys": list(first),
            "received": list(first.values()),
            "now": now_ms,
            "window": self.window_ms,
            "timeout": self.pending_timeout_ms,
        }
        with self._lock:
            self._calls += 1
            prune = self._calls % PRUNE_EVERY == 0
            rows = self._run(lambda con: con.execute(_RESERVE, params).fetchall()) if first else []
            if prune:
                cutoff = now_ms - 2 * self.window_ms
                self._run(lambda con: con.execute(_PRUNE, [cutoff]))
        not_reserved = {
            bytes(row[0]): None if row[1] is None else ReservedRow(row[1], row[2], row[3])
            for row in rows
        }
        out: list[Reservation] = []
        seen: set[bytes] = set()
        for key, received in keys:
            if key not in not_reserved:  # reserved by this call: its first copy is appended
                out.append(Reservation.DUPLICATE if key in seen else Reservation.FRESH)
                seen.add(key)
                continue
            state = classify(
                not_reserved[key],
                received,
                now_ms,
                window_ms=self.window_ms,
                pending_timeout_ms=self.pending_timeout_ms,
            )
            out.append(Reservation.IN_FLIGHT if state is Reservation.FRESH else state)
        return out

    def confirm(self, keys: Sequence[bytes]) -> None:
        """The broker acknowledged these keys' events: they are stored."""
        self._write(_CONFIRM, keys)

    def release(self, keys: Sequence[bytes]) -> None:
        """The append failed: forget the reservations (a retry appends them)."""
        self._write(_RELEASE, keys)

    def _write(self, sql: str, keys: Sequence[bytes]) -> None:
        if not keys:
            return
        ordered = sorted(set(keys))
        with self._lock:
            self._run(lambda con: con.execute(sql, [ordered]))

    def _run(self, statement: Callable[[Any], _T]) -> _T:
        """Run one statement (the caller holds the lock), retrying deadlocks and serialization
        failures; a lost connection is closed and reopened by the next call."""
        import psycopg

        for attempt in range(_ATTEMPTS):
            if self._closed:
                raise SharedStoreUnavailable("the reservation store is closed")
            if self._con.closed:
                self._con = self._connect()
            try:
                return statement(self._con)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == _ATTEMPTS - 1:
                    raise
            except psycopg.OperationalError as exc:
                if self._con.broken or self._con.closed:
                    self._con.close()
                    raise SharedStoreUnavailable(f"lost the shared database: {exc}") from exc
                raise
        raise AssertionError("unreachable")

    def __len__(self) -> int:
        with self._lock:
            row = self._run(lambda con: con.execute(f"SELECT count(*) FROM {TABLE}").fetchone())
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._con.close()


__all__ = ["TABLE", "PgReservationStore"]
