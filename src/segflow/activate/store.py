"""``delivery.sqlite``: destinations, subscriptions, the delivery queue, attempts, dead letters.

The queue is one table; a row's ``status`` moves ``pending -> delivered | dead`` (or
``skipped``). Per (destination, profile) only the oldest pending row — the *head* — may be
sent, so a later change never overtakes an earlier one. The feed cursor lives in the same
file and is advanced in the same transaction as the rows it produced.

The file runs with ``synchronous=NORMAL``: WAL commits stay atomic; a power cut may roll back
the last commits, which only re-reads the change feed (enqueue) or re-sends a change
(delivery) — both allowed by at-least-once, and the feed itself is durable upstream.

>>> import tempfile, os
>>> store = DeliveryStore(os.path.join(tempfile.mkdtemp(), "delivery.sqlite"))
>>> store.cursor("feed")
0
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from segflow.activate.exceptions import DestinationExistsError, DestinationNotFoundError
from segflow.activate.models import (
    Attempt,
    Delivery,
    Destination,
    DestinationStats,
    SecretInfo,
    Subscription,
)
from segflow.sqlite import connect, vacuum

SCHEMA = """
CREATE TABLE IF NOT EXISTS destinations (name TEXT PRIMARY KEY, spec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    id INTEGER PRIMARY KEY, destination TEXT NOT NULL, secret TEXT NOT NULL,
    created_ms INTEGER NOT NULL, expires_ms INTEGER);
CREATE TABLE IF NOT EXISTS subscriptions (
    destination TEXT NOT NULL, segment TEXT NOT NULL, spec BLOB NOT NULL,
    PRIMARY KEY (destination, segment));
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, destination TEXT NOT NULL, profile_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL, segment TEXT NOT NULL, kind TEXT NOT NULL,
    sequence INTEGER NOT NULL, at_ms INTEGER NOT NULL, payload BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL, first_attempt_ms INTEGER, next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER, last_error TEXT, finished_ms INTEGER);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (destination, profile_id, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (destination, status, id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, next_attempt_ms)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, delivery_id INTEGER NOT NULL, number INTEGER NOT NULL,
    at_ms INTEGER NOT NULL, status INTEGER, error TEXT, latency_ms REAL NOT NULL,
    next_attempt_ms INTEGER);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id, id);
CREATE TABLE IF NOT EXISTS sent_state (
    destination TEXT NOT NULL, profile_id TEXT NOT NULL, segment TEXT NOT NULL,
    kind TEXT NOT NULL, PRIMARY KEY (destination, profile_id, segment));
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY, destination TEXT NOT NULL, at_ms INTEGER NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL);
"""

_DELIVERY_COLS = (
    "id, destination, profile_id, webhook_id, segment, kind, sequence, at_ms, payload, status,"
    " attempts, created_ms, first_attempt_ms, next_attempt_ms, last_status, last_error, finished_ms"
)


class NewDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A row to queue: one change for one destination, its payload already built."""

    destination: str
    profile_id: str
    webhook_id: str
    segment: str
    kind: str
    sequence: int
    at_ms: int
    payload: dict[str, Any]


def _delivery(row: Sequence[Any]) -> Delivery:
    names = [c.strip() for c in _DELIVERY_COLS.split(",")]
    data = dict(zip(names, row, strict=True))
    data["payload"] = msgspec.json.decode(data["payload"])
    return msgspec.convert(data, Delivery)


class DeliveryStore:
    """Thread-safe access to ``delivery.sqlite`` (one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con = connect(self.path, synchronous="NORMAL")
        self._lock = threading.RLock()
        with self._lock:
            self._con.executescript(SCHEMA)

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

    # -- destinations --------------------------------------------------------------------
    def put_destination(self, dest: Destination, *, create: bool) -> None:
        with self.transaction() as con:
            exists = con.execute("SELECT 1 FROM destinations WHERE name=?", (dest.name,)).fetchone()
            if create and exists:
                raise DestinationExistsError(dest.name)
            if not create and not exists:
                raise DestinationNotFoundError(dest.name)
            con.execute(
                "INSERT OR REPLACE INTO destinations (name, spec) VALUES (?, ?)",
                (dest.name, msgspec.json.encode(dest)),
            )

    def destination(self, name: str) -> Destination:
        rows = self._rows("SELECT spec FROM destinations WHERE name=?", (name,))
        if not rows:
            raise DestinationNotFoundError(name)
        return msgspec.json.decode(rows[0][0], type=Destination)

    def destinations(self) -> list[Destination]:
        rows = self._rows("SELECT spec FROM destinations ORDER BY name")
        return [msgspec.json.decode(r[0], type=Destination) for r in rows]

    def delete_destination(self, name: str) -> None:
        with self.transaction() as con:
            if con.execute("DELETE FROM destinations WHERE name=?", (name,)).rowcount == 0:
                raise DestinationNotFoundError(name)
            for table in ("secrets", "subscriptions", "sent_state", "notices"):
                con.execute(f"DELETE FROM {table} WHERE destination=?", (name,))
            con.execute(
                "DELETE FROM attempts WHERE delivery_id IN"
                " (SELECT id FROM deliveries WHERE destination=?)",
                (name,),
            )
            con.execute("DELETE FROM deliveries WHERE destination=?", (name,))

    # -- secrets -------------------------------------------------------------------------
    def add_secret(self, destination: str, secret: str, now_ms: int, *, overlap_ms: int) -> None:
        """Add ``secret``; live older secrets expire after ``overlap_ms`` (rotation)."""
        with self.transaction() as con:
            con.execute(
                "UPDATE secrets SET expires_ms=? WHERE destination=? AND"
                " (expires_ms IS NULL OR expires_ms > ?)",
                (now_ms + overlap_ms, destination, now_ms + overlap_ms),
            )
            con.execute(
                "INSERT INTO secrets (destination, secret, created_ms) VALUES (?, ?, ?)",
                (destination, secret, now_ms),
            )

    def live_secrets(self, destination: str, now_ms: int) -> list[str]:
        """Secrets to sign with now, newest first."""
        rows = self._rows(
            "SELECT secret FROM secrets WHERE destination=? AND (expires_ms IS NULL OR expires_ms > ?)"
            " ORDER BY id DESC",
            (destination, now_ms),
        )
        return [r[0] for r in rows]

    def secret_infos(self, destination: str, now_ms: int) -> list[SecretInfo]:
        rows = self._rows(
            "SELECT id, secret, created_ms, expires_ms FROM secrets WHERE destination=? AND"
            " (expires_ms IS NULL OR expires_ms > ?) ORDER BY id DESC",
            (destination, now_ms),
        )
        return [
            SecretInfo(secret_id=r[0], prefix=r[1][:10], created_ms=r[2], expires_ms=r[3])
            for r in rows
        ]

    # -- subscriptions -------------------------------------------------------------------
    def put_subscription(self, sub: Subscription) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO subscriptions (destination, segment, spec) VALUES (?, ?, ?)",
                (sub.destination, sub.segment, msgspec.json.encode(sub)),
            )

    def delete_subscription(self, destination: str, segment: str) -> bool:
        with self.transaction() as con:
            cur = con.execute(
                "DELETE FROM subscriptions WHERE destination=? AND segment=?",
                (destination, segment),
            )
            return cur.rowcount > 0

    def subscriptions(self, destination: str | None = None) -> list[Subscription]:
        if destination is None:
            rows = self._rows("SELECT spec FROM subscriptions ORDER BY destination, segment")
        else:
            rows = self._rows(
                "SELECT spec FROM subscriptions WHERE destination=? ORDER BY segment",
                (destination,),
            )
        return [msgspec.json.decode(r[0], type=Subscription) for r in rows]

    # -- cursor, enqueue, sent state -----------------------------------------------------
    def cursor(self, name: str) -> int:
        rows = self._rows("SELECT seq FROM cursors WHERE name=?", (name,))
        return int(rows[0][0]) if rows else 0

    @staticmethod
    def set_cursor(con: sqlite3.Connection, name: str, seq: int) -> None:
        con.execute("INSERT OR REPLACE INTO cursors (name, seq) VALUES (?, ?)", (name, seq))

    @staticmethod
    def sent_kind(
        con: sqlite3.Connection, destination: str, profile_id: str, segment: str
    ) -> str | None:
        row = con.execute(
            "SELECT kind FROM sent_state WHERE destination=? AND profile_id=? AND segment=?",
            (destination, profile_id, segment),
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def set_sent(
        con: sqlite3.Connection, destination: str, profile_id: str, segment: str, kind: str
    ) -> None:
        con.execute(
            "INSERT OR REPLACE INTO sent_state (destination, profile_id, segment, kind)"
            " VALUES (?, ?, ?, ?)",
            (destination, profile_id, segment, kind),
        )

    @staticmethod
    def entered_segments(con: sqlite3.Connection, destination: str, profile_id: str) -> list[str]:
        rows = con.execute(
            "SELECT segment FROM sent_state WHERE destination=? AND profile_id=? AND kind='entered'"
            " ORDER BY segment",
            (destination, profile_id),
        ).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def enqueue(con: sqlite3.Connection, rows: Iterable[NewDelivery], now_ms: int) -> int:
        """Insert queued rows and record what each destination will have been told."""
        n = 0
        for r in rows:
            con.execute(
                "INSERT INTO deliveries (destination, profile_id, webhook_id, segment, kind, sequence,"
                " at_ms, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.destination,
                    r.profile_id,
                    r.webhook_id,
                    r.segment,
                    r.kind,
                    r.sequence,
                    r.at_ms,
                    msgspec.json.encode(r.payload),
                    now_ms,
                ),
            )
            con.execute(
                "INSERT OR REPLACE INTO sent_state (destination, profile_id, segment, kind)"
                " VALUES (?, ?, ?, ?)",
                (r.destination, r.profile_id, r.segment, r.kind),
            )
            n += 1
        return n

    # -- the worker's side ---------------------------------------------------------------
    def ready(
        self, destination: str, now_ms: int, limit: int, busy: Iterable[str] = ()
    ) -> list[Delivery]:
        """Heads of the per-profile queues of ``destination`` that are due, oldest first."""
        busy_set = set(busy)
        rows = self._rows(
            f"SELECT {', '.join('d.' + c.strip() for c in _DELIVERY_COLS.split(','))}"
            " FROM deliveries d INDEXED BY deliveries_status WHERE d.destination=? AND d.status='pending'"
            " AND d.next_attempt_ms <= ? AND NOT EXISTS (SELECT 1 FROM deliveries e INDEXED BY deliveries_pending"
            "   WHERE e.destination=d.destination AND e.profile_id=d.profile_id"
            "   AND e.status='pending' AND e.id < d.id)"
            " ORDER BY d.id LIMIT ?",
            (destination, now_ms, limit + len(busy_set)),
        )
        out = [_delivery(r) for r in rows]
        return [d for d in out if d.profile_id not in busy_set][:limit]

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
                        None if outcome == "pending" else attempt_at_ms,
                        d.id,
                    ),
                )

    # -- the operator's side -------------------------------------------------------------
    def deliveries(
        self, destination: str, *, status: str | None = None, since_ms: int = 0, limit: int = 100
    ) -> list[Delivery]:
        sql = f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE destination=? AND created_ms >= ?"
        args: list[Any] = [destination, since_ms]
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_delivery(r) for r in self._rows(sql, args)]

    def attempts(self, delivery_id: int) -> list[Attempt]:
        rows = self._rows(
            "SELECT delivery_id, number, at_ms, status, error, latency_ms, next_attempt_ms"
            " FROM attempts WHERE delivery_id=? ORDER BY id",
            (delivery_id,),
        )
        names = (
            "delivery_id",
            "number",
            "at_ms",
            "status",
            "error",
            "latency_ms",
            "next_attempt_ms",
        )
        return [msgspec.convert(dict(zip(names, r, strict=True)), Attempt) for r in rows]

    def replay(self, destination: str, *, since_ms: int = 0, ids: Sequence[int] = ()) -> int:
        """Put dead letters back in the queue (a fresh horizon, the same ``webhook_id``).

        Earlier attempts stay in the log; attempt numbers restart at 1.
        """
        sql = (
            "UPDATE deliveries SET status='pending', attempts=0, first_attempt_ms=NULL,"
            " next_attempt_ms=0, finished_ms=NULL WHERE destination=? AND status='dead'"
            " AND finished_ms >= ?"
        )
        args: list[Any] = [destination, since_ms]
        if ids:
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            args.extend(ids)
        with self.transaction() as con:
            return con.execute(sql, args).rowcount

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
        """Forget delivered rows (and their attempts) finished before ``before_ms``."""
        with self.transaction() as con:
            con.execute(
                "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries"
                " WHERE status='delivered' AND finished_ms < ?)",
                (before_ms,),
            )
            return con.execute(
                "DELETE FROM deliveries WHERE status='delivered' AND finished_ms < ?", (before_ms,)
            ).rowcount

    def compact(self) -> None:
        """VACUUM the file and truncate its write-ahead file (after a regulation)."""
        with self._lock:
            vacuum(self._con)

    def add_notice(self, destination: str, at_ms: int, level: str, message: str) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO notices (destination, at_ms, level, message) VALUES (?, ?, ?, ?)",
                (destination, at_ms, level, message),
            )

    def notices(self, destination: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT at_ms, level, message FROM notices WHERE destination=? ORDER BY id DESC LIMIT ?",
            (destination, limit),
        )
        return [{"at_ms": r[0], "level": r[1], "message": r[2]} for r in rows]
