"""The audit log is append-only: the store itself refuses UPDATE and DELETE."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from segflow.catalog.audit import AuditLog
from segflow.catalog.db import CatalogTarget, SharedCatalog
from segflow.db.postgres import connect_shared


def test_store_refuses_updates_and_deletes(catalog_target: CatalogTarget) -> None:
    log = AuditLog(catalog_target)
    log.record("cli:ann", "segment.create", "buyers", None, {"rule": "x"})
    log.close()
    if isinstance(catalog_target, SharedCatalog):
        import psycopg

        con = connect_shared(catalog_target.dsn, catalog_target.schema)
        refused: type[Exception] = psycopg.errors.RaiseException
        statements = ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"]
        statements.append("TRUNCATE audit_log")
    else:
        con = sqlite3.connect(catalog_target, isolation_level=None)
        refused = sqlite3.IntegrityError
        statements = ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"]
    try:
        for statement in statements:
            with pytest.raises(refused, match="append-only"):
                con.execute(statement)
        rows = con.execute("SELECT actor, action, target FROM audit_log").fetchall()
    finally:
        con.close()
    assert rows == [("cli:ann", "segment.create", "buyers")]


def test_appending_still_works_and_reopening_keeps_entries(catalog_target: CatalogTarget) -> None:
    first = AuditLog(catalog_target)
    first.record("a", "token.create", "t1", None, None)
    first.close()
    log = AuditLog(catalog_target)  # the schema (and its triggers) are created idempotently
    log.record("b", "token.revoke", "t1", {"role": "read"}, [1, "x"])
    log.record("c", "segment.create", "t100%", None, None)
    assert [e.action for e in log.list()] == ["segment.create", "token.revoke", "token.create"]
    assert [e.actor for e in log.list(action="token.")] == ["b", "a"]
    assert [e.actor for e in log.list(target="t1", limit=1)] == ["b"]
    assert [e.actor for e in log.list(target="t100%")] == ["c"]
    entry = log.list(action="token.revoke")[0]
    assert (entry.before, entry.after) == ({"role": "read"}, [1, "x"])
    assert entry.at_ms > 1_600_000_000_000
    log.close()


def test_no_code_path_edits_or_deletes_audit_rows() -> None:
    """Every SQL statement in the source tree that names audit_log only creates or reads it."""
    src = Path(__file__).resolve().parents[3] / "src" / "segflow"
    offending = []
    for path in src.rglob("*.py"):
        for line in path.read_text().splitlines():
            upper = line.upper()
            writes = "UPDATE " in upper or "DELETE " in upper
            guard = "TRIGGER" in upper or "RAISE" in upper
            if "AUDIT_LOG" in upper and writes and not guard:
                offending.append(f"{path.name}: {line.strip()}")
    assert offending == []
