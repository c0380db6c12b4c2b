"""The versioned catalog of segment and computed-trait definitions (``catalog.sqlite``, or
the shared PostgreSQL catalog with ``shared.dsn``: :mod:`segflow.catalog.db`).

Every edit is a new version; a delete is a tombstone version, so history is never lost. The
next version is read and written in one :meth:`~segflow.catalog.db.CatalogDB.write`
transaction, so editors in several processes or on several hosts never collide.

>>> import tempfile, os
>>> store = DefinitionStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> store.put("segment", "dormant", "no event in last 14 days").version
1
>>> store.put("segment", "dormant", "no event in last 21 days").version
2
>>> [d.name for d in store.list("segment")]
['dormant']
"""

from __future__ import annotations

import builtins
import threading
import time
from typing import Any, Literal

import msgspec

from segflow.catalog.db import CatalogTarget, open_catalog_db
from segflow.errors import NotFoundError, ValidationError

Kind = Literal["segment", "trait"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS definitions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    rule TEXT,
    description TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, name, version)
);
"""
_SCHEMA_POSTGRES = (
    """CREATE TABLE IF NOT EXISTS definitions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    rule TEXT,
    description TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, name, version)
)""",
)

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class Definition(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a segment or a computed trait."""

    kind: str
    name: str
    version: int
    rule: str
    description: str = ""
    created_at_ms: int = 0


def check_name(name: str) -> str:
    """Definition names are slugs: lower-case letters, digits, ``_`` and ``-``, 1-64 characters."""
    if not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise ValidationError("name", "use 1-64 lower-case letters, digits, '_' or '-'")
    return name


class DefinitionStore:
    """Versioned definitions in the catalog (SQLite or shared PostgreSQL); safe to share
    between threads."""

    def __init__(self, target: CatalogTarget) -> None:
        self._con = open_catalog_db(target, sqlite=_SCHEMA, postgres=_SCHEMA_POSTGRES)
        self._lock = threading.Lock()

    def put(self, kind: Kind, name: str, rule: str, description: str = "") -> Definition:
        """Create or edit a definition; returns the new version."""
        check_name(name)
        now = time.time_ns() // 1_000_000
        with self._lock, self._con.write("definitions"):
            version = self._latest_version(kind, name) + 1
            self._con.execute(
                "INSERT INTO definitions VALUES (?, ?, ?, ?, ?, 0, ?)",
                (kind, name, version, rule, description, now),
            )
        return Definition(
            kind=kind,
            name=name,
            version=version,
            rule=rule,
            description=description,
            created_at_ms=now,
        )

    def delete(self, kind: Kind, name: str) -> None:
        """Tombstone the definition (its history stays)."""
        self.get(kind, name)
        now = time.time_ns() // 1_000_000
        with self._lock, self._con.write("definitions"):
            self._con.execute(
                "INSERT INTO definitions VALUES (?, ?, ?, NULL, '', 1, ?)",
                (kind, name, self._latest_version(kind, name) + 1, now),
            )

    def get(self, kind: Kind, name: str) -> Definition:
        """The current version; :class:`NotFoundError` when missing or deleted (one row read
        through the primary key: the members API asks this on every page)."""
        rows = self._query(
            "SELECT kind, name, version, rule, description, created_at_ms, deleted "
            "FROM definitions WHERE kind = ? AND name = ? ORDER BY version DESC LIMIT 1",
            (kind, name),
        )
        if not rows or rows[0][6]:
            raise NotFoundError(f"no {kind} named {name!r}", details={"name": name})
        return _row(rows[0])

    def list(self, kind: Kind) -> list[Definition]:
        """Current (not deleted) definitions of ``kind``, by name."""
        return sorted(self._current(kind).values(), key=lambda d: d.name)

    def history(self, kind: Kind, name: str) -> builtins.list[Definition]:
        """Every version of one definition, oldest first (tombstones have an empty rule)."""
        rows = self._query(
            "SELECT kind, name, version, rule, description, created_at_ms, deleted FROM definitions "
            "WHERE kind = ? AND name = ? ORDER BY version",
            (kind, name),
        )
        return [_row(r) for r in rows]

    def _current(self, kind: Kind) -> dict[str, Definition]:
        rows = self._query(
            "SELECT d.kind, d.name, d.version, d.rule, d.description, d.created_at_ms, d.deleted "
            "FROM definitions d JOIN (SELECT name, MAX(version) v FROM definitions WHERE kind = ? "
            "GROUP BY name) m ON d.name = m.name AND d.version = m.v WHERE d.kind = ?",
            (kind, kind),
        )
        return {r[1]: _row(r) for r in rows if not r[6]}

    def _latest_version(self, kind: str, name: str) -> int:
        row = self._con.execute(
            "SELECT COALESCE(MAX(version), 0) FROM definitions WHERE kind = ? AND name = ?",
            (kind, name),
        ).fetchone()
        return int(row[0])

    def _query(self, sql: str, params: tuple[object, ...]) -> builtins.list[Any]:
        with self._lock:
            return list(self._con.execute(sql, params).fetchall())

    def close(self) -> None:
        self._con.close()


def _row(r: Any) -> Definition:
    return Definition(
        kind=r[0], name=r[1], version=r[2], rule=r[3] or "", description=r[4], created_at_ms=r[5]
    )
