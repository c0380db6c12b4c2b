"""Regulations and suppressions in the catalog (the control plane): ``catalog.sqlite``, or the
shared PostgreSQL catalog with ``shared.dsn`` (:mod:`segflow.catalog.db`).

Tables:

- ``regulations``: one row per request: type, status (``pending -> running -> finished |
  failed``), the step reached, timings, the actor, the identifiers **as keyed hashes**, the
  result counts and the error. ``work`` holds what the job needs to resume after a crash
  (the identifiers in clear, the profiles found, the change sequence of their exits); it is
  emptied when the regulation finishes or fails, and never shown by the API.
- ``suppressions``: the keyed hash of every suppressed identifier, its type, when, and the
  regulation that added it.
- ``privacy_meta``: the hashing key (random, made once) and a version counter of the
  suppressions, which serve processes poll to pick up changes made by the CLI. (In
  PostgreSQL, whose columns have one type, the counter is in ``privacy_counters``.)

>>> import tempfile, os
>>> store = PrivacyStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> reg = store.create("delete", [HashedIdentifier(type="email", hash="ab")], Work(), actor="cli:ann")
>>> store.get(reg.id).status
'pending'
>>> store.close()
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from segflow.catalog.db import CatalogTarget, open_catalog_db
from segflow.db.sqlite import vacuum
from segflow.privacy.exceptions import RegulationNotFound

RegulationType = Literal["delete", "suppress", "suppress_and_delete"]
Status = Literal["pending", "running", "finished", "failed"]
TYPES: tuple[RegulationType, ...] = ("delete", "suppress", "suppress_and_delete")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS regulations (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, status TEXT NOT NULL, step TEXT NOT NULL,
    created_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER, actor TEXT NOT NULL,
    identifiers TEXT NOT NULL, result TEXT NOT NULL DEFAULT '{}', error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, work BLOB);
CREATE INDEX IF NOT EXISTS regulations_open ON regulations (status, created_ms)
    WHERE status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS suppressions (
    hash TEXT PRIMARY KEY, id_type TEXT NOT NULL, created_ms INTEGER NOT NULL,
    regulation TEXT);
CREATE TABLE IF NOT EXISTS privacy_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
_SCHEMA_POSTGRES = (
    """CREATE TABLE IF NOT EXISTS regulations (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, status TEXT NOT NULL, step TEXT NOT NULL,
    created_ms BIGINT NOT NULL, started_ms BIGINT, finished_ms BIGINT, actor TEXT NOT NULL,
    identifiers TEXT NOT NULL, result TEXT NOT NULL DEFAULT '{}', error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, work BYTEA)""",
    """CREATE INDEX IF NOT EXISTS regulations_open ON regulations (status, created_ms)
    WHERE status IN ('pending', 'running')""",
    """CREATE TABLE IF NOT EXISTS suppressions (
    hash TEXT PRIMARY KEY, id_type TEXT NOT NULL, created_ms BIGINT NOT NULL,
    regulation TEXT)""",
    "CREATE TABLE IF NOT EXISTS privacy_meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS privacy_counters (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
)
# the suppressions' version counter: SQLite keeps it beside the key (a column of any type)
_BUMP = {
    "sqlite": "INSERT INTO privacy_meta VALUES ('suppressions_version', 1) ON CONFLICT(key)"
    " DO UPDATE SET value = privacy_meta.value + 1",
    "postgres": "INSERT INTO privacy_counters VALUES ('suppressions_version', 1) ON CONFLICT(key)"
    " DO UPDATE SET value = privacy_counters.value + 1",
}
_VERSION = {
    "sqlite": "SELECT value FROM privacy_meta WHERE key='suppressions_version'",
    "postgres": "SELECT value FROM privacy_counters WHERE key='suppressions_version'",
}
_COLS = (
    "id, type, status, step, created_ms, started_ms, finished_ms, actor, identifiers, result,"
    " error, attempts"
)


class HashedIdentifier(msgspec.Struct, frozen=True):
    """An identifier as stored: its type and keyed hash."""

    type: str
    hash: str


class Regulation(msgspec.Struct, kw_only=True):
    """A deletion or suppression request and where it stands."""

    id: str
    type: RegulationType
    status: Status
    step: str
    created_ms: int
    actor: str
    identifiers: list[HashedIdentifier]
    started_ms: int | None = None
    finished_ms: int | None = None
    result: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None
    attempts: int = 0


class Work(msgspec.Struct, kw_only=True):
    """What a running regulation needs to resume (identifiers in clear: never shown)."""

    identifiers: list[tuple[str, str]] = msgspec.field(default_factory=list)
    expanded: list[tuple[str, str]] = msgspec.field(default_factory=list)
    profile_ids: list[str] = msgspec.field(default_factory=list)
    identities: dict[str, list[tuple[str, str]]] = msgspec.field(default_factory=dict)
    exit_seq: int = 0
    done: list[str] = msgspec.field(default_factory=list)
    counts: dict[str, int] = msgspec.field(default_factory=dict)


class Suppression(msgspec.Struct, frozen=True, kw_only=True):
    hash: str
    type: str
    created_ms: int
    regulation: str | None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PrivacyStore:
    """Thread-safe access to the privacy tables of the catalog."""

    def __init__(self, target: CatalogTarget) -> None:
        self._con = open_catalog_db(target, sqlite=_SCHEMA, postgres=_SCHEMA_POSTGRES)
        self._lock = threading.Lock()
        self._key: bytes | None = None

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            return self._con.execute(sql, tuple(args)).fetchall()

    def _write(self, sql: str, args: Iterable[Any] = ()) -> int:
        with self._lock:
            return int(self._con.execute(sql, tuple(args)).rowcount)

    # -- the hashing key ---------------------------------------------------------------------
    def key(self) -> bytes:
        """The data directory's hashing key (made on first use)."""
        if self._key is None:
            self._write(
                "INSERT INTO privacy_meta VALUES ('hash_key', ?) ON CONFLICT DO NOTHING",
                (secrets.token_bytes(32),),
            )
            self._key = bytes(
                self._rows("SELECT value FROM privacy_meta WHERE key='hash_key'")[0][0]
            )
        return self._key

    # -- regulations -------------------------------------------------------------------------
    def create(
        self, kind: RegulationType, hashed: list[HashedIdentifier], work: Work, *, actor: str
    ) -> Regulation:
        reg = Regulation(
            id="reg_" + secrets.token_hex(8),
            type=kind,
            status="pending",
            step="pending",
            created_ms=_now_ms(),
            actor=actor,
            identifiers=hashed,
        )
        self._write(
            "INSERT INTO regulations (id, type, status, step, created_ms, actor, identifiers, work)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                reg.id,
                kind,
                reg.status,
                reg.step,
                reg.created_ms,
                actor,
                msgspec.json.encode(hashed).decode(),
                msgspec.msgpack.encode(work),
            ),
        )
        return reg

    def get(self, regulation_id: str) -> Regulation:
        rows = self._rows(f"SELECT {_COLS} FROM regulations WHERE id=?", (regulation_id,))
        if not rows:
            raise RegulationNotFound(
                f"no regulation {regulation_id}", details={"id": regulation_id}
            )
        return _regulation(rows[0])

    def recent(self, *, limit: int = 100, status: str | None = None) -> list[Regulation]:
        sql, args = f"SELECT {_COLS} FROM regulations", []
        if status is not None:
            sql, args = sql + " WHERE status=?", [status]
        rows = self._rows(sql + " ORDER BY created_ms DESC, id LIMIT ?", [*args, limit])
        return [_regulation(r) for r in rows]

    def open_regulations(self) -> list[Regulation]:
        """Pending and running regulations, oldest first."""
        rows = self._rows(
            f"SELECT {_COLS} FROM regulations WHERE status IN ('pending', 'running')"
            " ORDER BY created_ms, id"
        )
        return [_regulation(r) for r in rows]

    def work(self, regulation_id: str) -> Work:
        rows = self._rows("SELECT work FROM regulations WHERE id=?", (regulation_id,))
        if not rows or rows[0][0] is None:
            return Work()
        return msgspec.msgpack.decode(rows[0][0], type=Work)

    def save(self, reg: Regulation, work: Work | None) -> None:
        """Store ``reg``'s status and result; ``work=None`` empties the working data."""
        self._write(
            "UPDATE regulations SET status=?, step=?, started_ms=?, finished_ms=?, result=?,"
            " error=?, attempts=?, work=? WHERE id=?",
            (
                reg.status,
                reg.step,
                reg.started_ms,
                reg.finished_ms,
                msgspec.json.encode(reg.result).decode(),
                reg.error,
                reg.attempts,
                None if work is None else msgspec.msgpack.encode(work),
                reg.id,
            ),
        )

    # -- suppressions ------------------------------------------------------------------------
    def suppress(self, hashed: Iterable[HashedIdentifier], regulation: str | None) -> int:
        """Add suppressions (existing ones are kept); returns how many were new."""
        rows = [(h.hash, h.type, _now_ms(), regulation) for h in hashed]
        with self._lock, self._con.write("suppressions"):
            added = self._con.executemany(
                "INSERT INTO suppressions VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", rows
            )
            self._bump()
        return added

    def unsuppress(self, hash_hex: str) -> bool:
        """Remove one suppression; False when there was none."""
        with self._lock, self._con.write("suppressions"):
            removed = self._con.execute("DELETE FROM suppressions WHERE hash=?", (hash_hex,))
            self._bump()
        return removed.rowcount > 0

    def _bump(self) -> None:
        self._con.execute(_BUMP[self._con.engine])

    def suppressions(self, *, limit: int = 100, after: str = "") -> list[Suppression]:
        rows = self._rows(
            "SELECT hash, id_type, created_ms, regulation FROM suppressions WHERE hash > ?"
            " ORDER BY hash LIMIT ?",
            (after, limit),
        )
        return [Suppression(hash=r[0], type=r[1], created_ms=r[2], regulation=r[3]) for r in rows]

    def suppressed_hashes(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT hash FROM suppressions")}

    def suppressions_version(self) -> int:
        rows = self._rows(_VERSION[self._con.engine])
        return int(rows[0][0]) if rows else 0

    def compact(self) -> None:
        """VACUUM ``catalog.sqlite`` and truncate its write-ahead file (identifiers in clear
        of finished regulations leave no bytes behind). In PostgreSQL, ``VACUUM FULL`` rewrites
        the privacy tables (the server's write-ahead log and backups are the operator's)."""
        with self._lock:
            if self._con.engine == "sqlite":
                vacuum(self._con.con)
            else:
                self._con.execute("VACUUM FULL regulations, suppressions")


def _regulation(row: Any) -> Regulation:
    return Regulation(
        id=row[0],
        type=row[1],
        status=row[2],
        step=row[3],
        created_ms=row[4],
        started_ms=row[5],
        finished_ms=row[6],
        actor=row[7],
        identifiers=msgspec.json.decode(row[8], type=list[HashedIdentifier]),
        result=msgspec.json.decode(row[9]),
        error=row[10],
        attempts=row[11],
    )
