"""The delivery queue in ``delivery.sqlite``: heads, attempts, frozen batches, dead letters.

A row's ``status`` moves ``pending -> delivered | dead``; a replayed dead letter goes back to
``pending``, or to ``skipped`` when a later change of the same (destination, profile,
segment) has been delivered meanwhile (sending it would rewind the receiver's view).

Per (destination, profile) only the oldest pending row — the *head* — may be sent, so a later
change never overtakes an earlier one. A batch's membership is frozen (``batch_key``) before
its first attempt and never regrouped, so a retry carries the same changes under the same
``webhook-id``.

:class:`~segflow.activate.store.DeliveryStore` is this queue plus the catalogue
(destinations, secrets, subscriptions).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from segflow.activate.models import Attempt, Delivery, DestinationStats
from segflow.db.sqlite import connect

_COLS = (
    "id",
    "destination",
    "profile_id",
    "webhook_id",
    "segment",
    "kind",
    "sequence",
    "at_ms",
    "payload",
    "status",
    "attempts",
    "created_ms",
    "first_attempt_ms",
    "next_attempt_ms",
    "last_status",
    "last_error",
    "finished_ms",
    "batch_key",
)
_D_COLS = ", ".join("d." + c for c in _COLS)
_IS_HEAD = (
    "NOT EXISTS (SELECT 1 FROM deliveries e INDEXED BY deliveries_pending"
    " WHERE e.destination=d.destination AND e.profile_id=d.profile_id"
    " AND e.status='pending' AND e.id < d.id)"
)
_ATTEMPT_COLS = ("delivery_id", "number", "at_ms", "status", "error", "latency_ms")
SUPERSEDED = "superseded by a later delivered change of this segment (delivery {})"


_payload = msgspec.json.Decoder()


def _delivery(row: Sequence[Any]) -> Delivery:
    """A row as a :class:`Delivery` (built directly: ``msgspec.convert`` cost 3x as much, and
    a dispatch of a batching destination reads thousands of rows)."""
    data = dict(zip(_COLS, row, strict=True))
    data["payload"] = _payload.decode(data["payload"])
    return Delivery(**data)


class SqliteFile:
    """One SQLite connection behind a lock (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con = connect(self.path, synchronous="NORMAL")
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); commits on success."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._con.execute(sql, args).fetchall()


class DeliveryQueue(SqliteFile):
    """The worker's and the operator's side of the queue."""

    # -- the worker's side ---------------------------------------------------------------
    def ready(
        self, destination: str, now_ms: int, limit: int, busy: Iterable[str] = ()
    ) -> list[Delivery]:
        """Heads of the per-profile queues of ``destination`` that are due, oldest first."""
        busy_set = set(busy)
        rows = self._rows(
            f"SELECT {_D_COLS} FROM deliveries d INDEXED BY deliveries_status"
            " WHERE d.destination=? AND d.status='pending' AND d.next_attempt_ms <= ?"
            f" AND {_IS_HEAD} ORDER BY d.id LIMIT ?",
            (destination, now_ms, limit + len(busy_set)),
        )
        out = [_delivery(r) for r in rows]
        return [d for d in out if d.profile_id not in busy_set][:limit]

    def batch(self, batch_key: str) -> tuple[list[Delivery], bool]:
        """The pending members of a frozen batch, and whether every one is its profile's head
        (a replayed older change of a member's profile goes first)."""
        rows = self._rows(
            f"SELECT {_D_COLS}, {_IS_HEAD} FROM deliveries d"
            " WHERE d.batch_key=? AND d.status='pending' ORDER BY d.id",
            (batch_key,),
        )
        return [_delivery(r[:-1]) for r in rows], all(r[-1] for r in rows)

    def freeze(self, deliveries: Sequence[Delivery], batch_key: str) -> list[Delivery]:
        """Record that ``deliveries`` travel together from now on, as ``batch_key``."""
        with self.transaction() as con:
            con.executemany(
                "UPDATE deliveries SET batch_key=? WHERE id=?",
                [(batch_key, d.id) for d in deliveries],
            )
        return [msgspec.structs.replace(d, batch_key=batch_key) for d in deliveries]

    def next_due_ms(self, destination: str) -> int | None:
        """The earliest scheduled retry (only heads that failed have one)."""
        rows = self._rows(
            "SELECT MIN(next_attempt_ms) FROM deliveries WHERE destination=? AND status='pending'"
            " AND next_attempt_ms > 0",
            (destination,),
        )
        return None if rows[0][0] is None else int(rows[0][0])

    def record(
        self,
        deliveries: Sequence[Delivery],
        attempt_at_ms: int,
        *,
        status: int | None,
        error: str | None,
        latency_ms: float,
        outcome: str,
        next_attempt_ms: int = 0,
    ) -> None:
        """Record one attempt of each delivery; ``outcome`` is pending|delivered|dead."""
        finished = None if outcome == "pending" else attempt_at_ms
        with self.transaction() as con:
            for d in deliveries:
                number = d.attempts + 1
                con.execute(
                    "INSERT INTO attempts (delivery_id, number, at_ms, status, error, latency_ms,"
                    " next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        d.id,
                        number,
                        attempt_at_ms,
                        status,
                        error,
                        latency_ms,
                        next_attempt_ms if outcome == "pending" else None,
                    ),
                )
                con.execute(
                    "UPDATE deliveries SET status=?, attempts=?, first_attempt_ms=COALESCE("
                    "first_attempt_ms, ?), next_attempt_ms=?, last_status=?, last_error=?,"
                    " finished_ms=? WHERE id=?",
                    (
                        outcome,
                        number,
                        attempt_at_ms,
                        next_attempt_ms,
                        status,
                        error,
                        finished,
                        d.id,
                    ),
                )
                if outcome == "delivered":
                    _delivered(con, d, attempt_at_ms)

    # -- the operator's side -------------------------------------------------------------
    def deliveries(
        self, destination: str, *, status: str | None = None, since_ms: int = 0, limit: int = 100
    ) -> list[Delivery]:
        sql = (
            f"SELECT {_D_COLS} FROM deliveries d WHERE d.destination=? AND d.created_ms >= ?"
            + (" AND d.status=?" if status is not None else "")
            + " ORDER BY d.id DESC LIMIT ?"
        )
        args = [destination, since_ms, *([status] if status is not None else []), limit]
        return [_delivery(r) for r in self._rows(sql, args)]

    def attempts(self, delivery_id: int) -> list[Attempt]:
        rows = self._rows(
            f"SELECT {', '.join(_ATTEMPT_COLS)}, next_attempt_ms FROM attempts"
            " WHERE delivery_id=? ORDER BY id",
            (delivery_id,),
        )
        names = (*_ATTEMPT_COLS, "next_attempt_ms")
        return [msgspec.convert(dict(zip(names, r, strict=True)), Attempt) for r in rows]

    def replay(
        self, destination: str, *, since_ms: int = 0, ids: Sequence[int] = ()
    ) -> dict[str, int]:
        """Put dead letters back in the queue, oldest first (a fresh horizon, the same
        ``webhook_id``); earlier attempts stay in the log and numbering restarts at 1.

        A dead letter whose (profile, segment) has had a *later* change delivered is not
        re-sent but marked ``skipped`` (superseded). A replayed change keeps its batch only
        if the whole batch is replayed; otherwise the batch is dissolved and its members are
        regrouped (under new ids) when they are sent.
        """
        sql = (
            "SELECT d.id, d.batch_key, l.delivery_id FROM deliveries d LEFT JOIN last_delivered l"
            " ON l.destination=d.destination AND l.profile_id=d.profile_id AND l.segment=d.segment"
            " WHERE d.destination=? AND d.status='dead' AND d.finished_ms >= ?"
        )
        args: list[Any] = [destination, since_ms]
        if ids:
            sql += f" AND d.id IN ({', '.join('?' * len(ids))})"
            args.extend(ids)
        with self.transaction() as con:
            rows = con.execute(sql + " ORDER BY d.id", args).fetchall()
            stale = [(r[0], r[2]) for r in rows if r[2] is not None and r[2] > r[0]]
            fresh = [r[0] for r in rows if r[2] is None or r[2] < r[0]]
            con.executemany(
                "UPDATE deliveries SET status='skipped', last_error=? WHERE id=?",
                [(SUPERSEDED.format(newer), row_id) for row_id, newer in stale],
            )
            con.executemany(
                "UPDATE deliveries SET status='pending', attempts=0, first_attempt_ms=NULL,"
                " next_attempt_ms=0, finished_ms=NULL WHERE id=?",
                [(row_id,) for row_id in fresh],
            )
            _dissolve_partial_batches(con, {r[1] for r in rows if r[1]}, set(fresh))
        return {"replayed": len(fresh), "superseded": len(stale)}

    def stats(self, destination: str) -> DestinationStats:
        counts = dict(
            self._rows(
                "SELECT status, COUNT(*) FROM deliveries WHERE destination=? GROUP BY status",
                (destination,),
            )
        )
        oldest = self._rows(
            "SELECT MIN(created_ms) FROM deliveries WHERE destination=? AND status='pending'",
            (destination,),
        )[0][0]
        last = self._rows(
            "SELECT a.at_ms, a.status FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
            " WHERE d.destination=? ORDER BY a.at_ms DESC LIMIT 1",
            (destination,),
        )
        return DestinationStats(
            pending=counts.get("pending", 0),
            delivered=counts.get("delivered", 0),
            dead=counts.get("dead", 0),
            skipped=counts.get("skipped", 0),
            oldest_pending_ms=oldest,
            last_attempt_ms=last[0][0] if last else None,
            last_status=last[0][1] if last else None,
        )

    def prune(self, before_ms: int) -> int:
        """Forget delivered and skipped rows (and their attempts) finished before ``before_ms``
        (``last_delivered`` keeps what replays need to know)."""
        done = "status IN ('delivered', 'skipped') AND finished_ms < ?"
        with self.transaction() as con:
            con.execute(
                f"DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {done})",
                (before_ms,),
            )
            return con.execute(f"DELETE FROM deliveries WHERE {done}", (before_ms,)).rowcount


def _delivered(con: sqlite3.Connection, d: Delivery, at_ms: int) -> None:
    """Remember the newest delivered row of (destination, profile, segment); an older row of
    it still pending (only a replay makes one) is superseded now rather than sent after, and
    a batch it belonged to is dissolved (its id would no longer name its members)."""
    con.execute(
        "INSERT INTO last_delivered (destination, profile_id, segment, delivery_id)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (destination, profile_id, segment) DO UPDATE"
        " SET delivery_id=MAX(delivery_id, excluded.delivery_id)",
        (d.destination, d.profile_id, d.segment, d.id),
    )
    stale = con.execute(
        "SELECT id, batch_key FROM deliveries INDEXED BY deliveries_pending WHERE destination=?"
        " AND profile_id=? AND status='pending' AND id < ? AND segment=?",
        (d.destination, d.profile_id, d.id, d.segment),
    ).fetchall()
    for row_id, key in stale:
        con.execute(
            "UPDATE deliveries SET status='skipped', last_error=?, finished_ms=? WHERE id=?",
            (SUPERSEDED.format(d.id), at_ms, row_id),
        )
        if key is not None:
            con.execute("UPDATE deliveries SET batch_key=NULL WHERE batch_key=?", (key,))


def _dissolve_partial_batches(con: sqlite3.Connection, keys: set[str], replayed: set[int]) -> None:
    """Clear the key of every batch that is not replayed whole (its id names its members)."""
    for key in keys:
        members = {r[0] for r in con.execute("SELECT id FROM deliveries WHERE batch_key=?", (key,))}
        if not members <= replayed:
            con.execute("UPDATE deliveries SET batch_key=NULL WHERE batch_key=?", (key,))
