"""``delivery.sqlite``: destinations, secrets, subscriptions, what each destination was told,
and the delivery queue (:mod:`segflow.activate.deliveries`; tables in :mod:`segflow.activate.schema`).

The feed cursor lives in the same file and is advanced in the same transaction as the rows
it produced.

The file runs with ``synchronous=NORMAL``: WAL commits stay atomic; a power cut may roll back
the last commits, which only re-reads the change feed (enqueue) or re-sends a change
(delivery) — both allowed by at-least-once, and the feed itself is durable upstream.

>>> import tempfile, os
>>> store = DeliveryStore(os.path.join(tempfile.mkdtemp(), "delivery.sqlite"))
>>> store.cursor("feed")
0
>>> store.close()
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from segflow.activate import schema
from segflow.activate.deliveries import DeliveryQueue
from segflow.activate.exceptions import DestinationExistsError, DestinationNotFoundError
from segflow.activate.models import Destination, SecretInfo, Subscription
from segflow.activate.secretbox import SecretBox, fingerprint
from segflow.activate.signing import SECRET_PREFIX
from segflow.db.sqlite import vacuum


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


class DeliveryStore(DeliveryQueue):
    """Thread-safe access to ``delivery.sqlite`` (one connection behind a lock).

    ``box`` encrypts the signing secrets; by default the key is ``secrets.key`` beside the
    file (see :mod:`segflow.activate.secretbox`). Opening migrates older files: new columns,
    and secrets stored in clear are encrypted and their clear bytes wiped from the file.
    """

    def __init__(self, path: str | Path, *, box: SecretBox | None = None) -> None:
        super().__init__(path)
        self.box = box or SecretBox.open(self.path.parent)
        self._clear: dict[str, str] = {}  # decrypted secrets by their stored token
        with self._lock:
            schema.create(self._con)
            self._encrypt_clear_secrets()

    def _encrypt_clear_secrets(self) -> None:
        rows = self._con.execute(
            "SELECT id, secret FROM secrets WHERE secret LIKE ?", (SECRET_PREFIX + "%",)
        ).fetchall()
        if not rows:
            return
        self._con.execute("PRAGMA secure_delete=ON")  # zero the clear text's old bytes
        with self.transaction() as con:
            for row_id, secret in rows:
                con.execute(
                    "UPDATE secrets SET secret=? WHERE id=?", (self.box.encrypt(secret), row_id)
                )
        self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and the WAL's copy of them
        self._con.execute("PRAGMA secure_delete=OFF")

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
            for table in ("secrets", "subscriptions", "sent_state", "last_delivered", "notices"):
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
                (destination, self.box.encrypt(secret), now_ms),
            )

    def live_secrets(self, destination: str, now_ms: int) -> list[str]:
        """Secrets to sign with now, newest first."""
        rows = self._rows(
            "SELECT secret FROM secrets WHERE destination=? AND (expires_ms IS NULL OR expires_ms > ?)"
            " ORDER BY id DESC",
            (destination, now_ms),
        )
        return [self._decrypt(r[0]) for r in rows]

    def _decrypt(self, token: str) -> str:
        clear = self._clear.get(token)
        if clear is None:
            clear = self._clear[token] = self.box.decrypt(token)
        return clear

    def secret_infos(self, destination: str, now_ms: int) -> list[SecretInfo]:
        rows = self._rows(
            "SELECT id, secret, created_ms, expires_ms FROM secrets WHERE destination=? AND"
            " (expires_ms IS NULL OR expires_ms > ?) ORDER BY id DESC",
            (destination, now_ms),
        )
        return [
            SecretInfo(
                secret_id=r[0],
                fingerprint=fingerprint(self._decrypt(r[1])),
                created_ms=r[2],
                expires_ms=r[3],
            )
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
    def consents(con: sqlite3.Connection, profile_ids: Iterable[str]) -> dict[str, Any]:
        """The consent the feed last told for each profile that has one."""
        out: dict[str, Any] = {}
        pids = list(profile_ids)
        for i in range(0, len(pids), 500):
            chunk = pids[i : i + 500]
            rows = con.execute(
                f"SELECT profile_id, consent FROM consents WHERE profile_id IN"
                f" ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update((pid, msgspec.json.decode(raw)) for pid, raw in rows)
        return out

    @staticmethod
    def set_consent(con: sqlite3.Connection, profile_id: str, consent: Any) -> None:
        con.execute(
            "INSERT OR REPLACE INTO consents (profile_id, consent) VALUES (?, ?)",
            (profile_id, msgspec.json.encode(consent)),
        )

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
