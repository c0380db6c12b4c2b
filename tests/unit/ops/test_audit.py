"""The audit log is append-only: the store itself refuses UPDATE and DELETE."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from segflow.audit import AuditLog


def test_store_refuses_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    log = AuditLog(path)
    log.record("cli:ann", "segment.create", "buyers", None, {"rule": "x"})
    log.close()
    con = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("UPDATE audit_log SET actor = 'someone else'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("DELETE FROM audit_log")
        rows = con.execute("SELECT actor, action, target FROM audit_log").fetchall()
    finally:
        con.close()
    assert rows == [("cli:ann", "segment.create", "buyers")]


def test_appending_still_works_and_reopening_keeps_entries(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    AuditLog(path).record("a", "token.create", "t1", None, None)
    log = AuditLog(path)  # the schema (and its triggers) are created idempotently
    log.record("b", "token.revoke", "t1", None, None)
    assert [e.action for e in log.list()] == ["token.revoke", "token.create"]
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
