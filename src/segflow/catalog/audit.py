"""The audit log: every change to segflow's configuration, who made it, when, before and after.

Rows live in the catalog (table ``audit_log``) beside what they describe: ``catalog.sqlite``,
or the shared PostgreSQL catalog with ``shared.dsn`` (:mod:`segflow.catalog.db`). Writers are
the services the API, the CLI and the console share (segments and traits, destinations and
subscriptions, tokens, sources), so a change is recorded once whatever surface made it.
``actor`` names who: ``token:<id> (<name>)`` for the API and console, ``cli:<user>`` for
the command line.

The log is append-only: no API route, CLI command or console page edits or deletes an
entry, and the store refuses it (triggers raise on ``UPDATE`` and ``DELETE`` of
``audit_log``, and on ``TRUNCATE`` in PostgreSQL; ``DROP TABLE`` remains possible to whoever
owns the file or the table). Entries are listed newest first by ``id``; with writers on
several hosts, ids are handed out in insertion order, which is commit order to within the
few milliseconds two concurrent commits can overlap.

>>> import tempfile, os
>>> log = AuditLog(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> log.record("cli:ann", "segment.create", "buyers", None, {"rule": 'did "Order Completed"'})
>>> [(e.actor, e.action, e.target, e.after) for e in log.list()]
[('cli:ann', 'segment.create', 'buyers', {'rule': 'did "Order Completed"'})]
"""

from __future__ import annotations

import getpass
import threading
import time
from typing import Any

import msgspec

from segflow.catalog.db import CatalogTarget, open_catalog_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"""
_SCHEMA_POSTGRES = (
    """CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT
)""",
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    """CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
)


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded change."""

    id: int
    at_ms: int
    actor: str
    action: str
    target: str
    before: Any = None
    after: Any = None


def cli_actor() -> str:
    """``cli:<login name>`` for changes made from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


class AuditLog:
    """Append-only audit rows in the catalog (SQLite or shared PostgreSQL); safe to share
    between threads."""

    def __init__(self, target: CatalogTarget) -> None:
        self._con = open_catalog_db(target, sqlite=_SCHEMA, postgres=_SCHEMA_POSTGRES)
        self._lock = threading.Lock()

    def record(self, actor: str, action: str, target: str, before: Any, after: Any) -> None:
        """Append one change (``before``/``after`` are JSON-encodable, None when absent)."""
        row = (time.time_ns() // 1_000_000, actor, action, target, _json(before), _json(after))
        with self._lock:
            self._con.execute(
                "INSERT INTO audit_log (at_ms, actor, action, target, before, after)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )

    def list(
        self, *, limit: int = 100, action: str | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        """The newest ``limit`` entries first, optionally for one action prefix or target."""
        sql = "SELECT id, at_ms, actor, action, target, before, after FROM audit_log WHERE 1=1"
        args: list[Any] = []
        if action:
            sql += " AND action LIKE ?"
            args.append(action.replace("%", "") + "%")
        if target:
            sql += " AND target = ?"
            args.append(target)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._con.execute(sql, args).fetchall()
        return [
            AuditEntry(
                id=r[0],
                at_ms=r[1],
                actor=r[2],
                action=r[3],
                target=r[4],
                before=_load(r[5]),
                after=_load(r[6]),
            )
            for r in rows
        ]

    def close(self) -> None:
        self._con.close()


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(msgspec.to_builtins(value)).decode()


def _load(raw: str | None) -> Any:
    return None if raw is None else msgspec.json.decode(raw)
