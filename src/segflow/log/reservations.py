"""Dedupe for logs that cannot check and append in one local transaction (Kafka).

The embedded driver checks ``(source_id, message_id)`` and appends in one SQLite transaction.
A Kafka producer cannot join that transaction, so the collectors keep a shared **reservation
table** and append in three steps. Here the table is a SQLite file (``dedupe.sqlite``) shared by
the collectors of one host; with ``shared.dsn`` it is :class:`PgReservationStore
<segflow.log.reservations_pg.PgReservationStore>`, on PostgreSQL, shared by every host. Both
follow :class:`ReservationTable` and decide a key's state with :func:`classify`.

1. ``reserve``: in one transaction, every key not seen within the window is inserted as
   *pending* (with the reservation time); a key already *stored* is a duplicate; a key
   pending for less than ``pending_timeout_ms`` is **in flight** in another request.
2. the caller produces the fresh events and waits for the broker's acknowledgement;
3. ``confirm`` marks them stored (after the broker's ack), or ``release`` deletes the
   reservations (the produce failed: the client's retry must not be taken for a duplicate).

Failure cases (docs/scaling.md): a collector that dies between the broker's ack and
``confirm`` leaves its keys pending; after ``pending_timeout_ms`` a retry of those messages is
appended again (a duplicate in the log, which the warehouse loader drops on ``messageId`` and
the processor counts twice). The window is the time between an ack and one local commit.

>>> import os, tempfile
>>> store = ReservationStore(os.path.join(tempfile.mkdtemp(), "dedupe.sqlite"), window_ms=1_000)
>>> k = dedupe_key("src", "m1")
>>> store.reserve([(k, 10)], now_ms=10)
[<Reservation.FRESH: 0>]
>>> store.reserve([(k, 11)], now_ms=11)
[<Reservation.IN_FLIGHT: 2>]
>>> store.confirm([k]); store.reserve([(k, 12)], now_ms=12)
[<Reservation.DUPLICATE: 1>]
>>> store.close()
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from segflow.db.sqlite import connect
from segflow.log.dedupe import dedupe_key

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS reservations(key BLOB PRIMARY KEY, received_at_ms INTEGER NOT NULL,"
    " reserved_at_ms INTEGER NOT NULL, stored INTEGER NOT NULL) WITHOUT ROWID"
)
PRUNE_EVERY = 200  # reserve calls between two prunes of the stored rows older than 2 windows


class Reservation(enum.IntEnum):
    """The outcome of reserving one key."""

    FRESH = 0  # reserved: append it, then confirm or release
    DUPLICATE = 1  # stored within the window: acknowledge without appending
    IN_FLIGHT = 2  # another request is appending it now: retry later


class ReservedRow(NamedTuple):
    """A key's row in the reservation table."""

    received_at_ms: int
    reserved_at_ms: int
    stored: bool


def classify(
    row: ReservedRow | None,
    received_at_ms: int,
    now_ms: int,
    *,
    window_ms: int,
    pending_timeout_ms: int,
) -> Reservation:
    """What reserving a key received at ``received_at_ms`` gives when its row is ``row``: the
    rule every store applies (the PostgreSQL store's upsert states its FRESH branch in SQL).

    >>> rule = dict(window_ms=100, pending_timeout_ms=10)
    >>> classify(None, 5, 5, **rule).name
    'FRESH'
    >>> [classify(ReservedRow(0, 0, True), r, 50, **rule).name for r in (100, 101)]
    ['DUPLICATE', 'FRESH']
    >>> [classify(ReservedRow(0, 0, False), 0, now, **rule).name for now in (9, 10)]
    ['IN_FLIGHT', 'FRESH']
    """
    if row is None or received_at_ms - row.received_at_ms > window_ms:
        return Reservation.FRESH
    if row.stored:
        return Reservation.DUPLICATE
    if now_ms - row.reserved_at_ms < pending_timeout_ms:
        return Reservation.IN_FLIGHT
    return Reservation.FRESH  # its collector died before confirming: append again


class ReservationTable(Protocol):
    """The reservation table the Kafka driver appends through (SQLite or PostgreSQL)."""

    window_ms: int
    pending_timeout_ms: int

    def reserve(self, keys: Sequence[tuple[bytes, int]], *, now_ms: int) -> list[Reservation]:
        """Reserve ``(key, received_at_ms)`` pairs: one outcome per pair, in order."""
        ...

    def confirm(self, keys: Sequence[bytes]) -> None:
        """The broker acknowledged these keys' events: they are stored."""
        ...

    def release(self, keys: Sequence[bytes]) -> None:
        """The append failed: forget the reservations (a retry appends them)."""
        ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class ReservationStore:
    """See the module docstring. Thread-safe; shared by the collector processes of a host."""

    def __init__(
        self, path: str | Path, *, window_ms: int, pending_timeout_ms: int = 30_000
    ) -> None:
        self.path = Path(path)
        self.window_ms = window_ms
        self.pending_timeout_ms = pending_timeout_ms
        self._con = connect(self.path)
        self._con.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._writes = 0

    def reserve(self, keys: Sequence[tuple[bytes, int]], *, now_ms: int) -> list[Reservation]:
        """Reserve ``(key, received_at_ms)`` pairs (one transaction, fsynced)."""
        out: list[Reservation] = []
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                fresh: dict[bytes, int] = {}
                for key, received in keys:
                    state = self._state(key, received, now_ms, fresh)
                    if state is Reservation.FRESH:
                        fresh[key] = received
                    out.append(state)
                con.executemany(
                    "INSERT OR REPLACE INTO reservations VALUES(?,?,?,0)",
                    [(k, r, now_ms) for k, r in fresh.items()],
                )
                self._maybe_prune(now_ms)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return out

    def _state(
        self, key: bytes, received: int, now_ms: int, fresh: dict[bytes, int]
    ) -> Reservation:
        if key in fresh:
            return Reservation.DUPLICATE  # twice in one call: the first copy is appended
        row = self._con.execute(
            "SELECT received_at_ms, reserved_at_ms, stored FROM reservations WHERE key=?", (key,)
        ).fetchone()
        return classify(
            None if row is None else ReservedRow(int(row[0]), int(row[1]), bool(row[2])),
            received,
            now_ms,
            window_ms=self.window_ms,
            pending_timeout_ms=self.pending_timeout_ms,
        )

    def confirm(self, keys: Sequence[bytes]) -> None:
        """The broker acknowledged these keys' events: they are stored."""
        self._write("UPDATE reservations SET stored=1 WHERE key=?", keys)

    def release(self, keys: Sequence[bytes]) -> None:
        """The append failed: forget the reservations (a retry appends them)."""
        self._write("DELETE FROM reservations WHERE key=? AND stored=0", keys)

    def _write(self, sql: str, keys: Sequence[bytes]) -> None:
        if not keys:
            return
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany(sql, [(k,) for k in keys])
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def _maybe_prune(self, now_ms: int) -> None:
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self._con.execute(
                "DELETE FROM reservations WHERE stored=1 AND received_at_ms < ?",
                (now_ms - 2 * self.window_ms,),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM reservations").fetchone()[0])

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):  # already closed
            self._con.close()


__all__ = [
    "PRUNE_EVERY",
    "Reservation",
    "ReservationStore",
    "ReservationTable",
    "ReservedRow",
    "classify",
    "dedupe_key",
]
