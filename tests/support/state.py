"""Reading a state store's committed values in tests and benchmarks, closing the reader each
time (a PostgreSQL reader holds a connection), and how many records processors consumed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def committed_get(store: Any, ns: str, key: str) -> bytes | None:
    reader = store.reader()
    try:
        return reader.get(ns, key)  # type: ignore[no-any-return]
    finally:
        reader.close()


def committed_scan(store: Any, ns: str, start: str, end: str) -> list[tuple[str, bytes]]:
    reader = store.reader()
    try:
        return reader.scan(ns, start, end)  # type: ignore[no-any-return]
    finally:
        reader.close()


def consumed(state: Path) -> int:
    """The offsets committed in ``state.sqlite``, summed over partitions (0 before it exists)."""
    if not state.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT COALESCE(SUM(next_offset), 0) FROM offsets").fetchone()
            return int(row[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def consumed_shared(dsn: str, schema: str) -> int:
    """The same for the state in PostgreSQL (``shared.dsn``; 0 before its tables exist)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        try:
            row = con.execute(
                f'SELECT COALESCE(SUM(next_offset), 0) FROM "{schema}".state_offsets'
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0
