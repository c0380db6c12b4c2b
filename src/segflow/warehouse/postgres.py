"""The warehouse on PostgreSQL: one shared database instead of a DuckDB file (docs/warehouse.md).

Selected with ``warehouse.engine = "postgres"`` and ``warehouse.dsn`` (a libpq DSN or URL).
The schema is DuckDB's, transpiled by SQLGlot (JSON columns stay ``json`` so numbers keep
their JSON text), plus ``segflow_epoch_ms`` that segment SQL uses to read times held as text.
:class:`PgConnection` gives the rest of segflow the small DB-API surface it uses on DuckDB
(``execute(sql, params).fetchall()``, ``close``) with DuckDB's ``?`` placeholders, so the
segment previews, membership history and ``segflow sql`` run unchanged.

Needs the ``postgres`` extra (``pip install 'segflow[postgres]'``: psycopg 3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlglot

from segflow.rules.sql.dialects import PG_EPOCH_MS_DDL
from segflow.warehouse.exceptions import QueryError, WarehouseUnavailable
from segflow.warehouse.schema import SCHEMA_VERSION, TABLES, VIEWS

DIALECT = "postgres"
_LOCK_KEY = 0x5E6F10  # pg_advisory_xact_lock key: one schema creator at a time


def postgres_ddl() -> list[str]:
    """The warehouse schema as PostgreSQL statements (idempotent).

    >>> ddl = postgres_ddl()
    >>> ddl[0].startswith("CREATE TABLE IF NOT EXISTS events")
    True
    >>> any(s.startswith("CREATE OR REPLACE VIEW profile_events") for s in ddl)
    True
    """
    out = [sqlglot.transpile(t, read="duckdb", write=DIALECT)[0] for t in TABLES]
    for view in VIEWS:
        sql = sqlglot.transpile(view, read="duckdb", write=DIALECT)[0]
        out.append(sql.replace("CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW", 1))
    out += [
        "CREATE INDEX IF NOT EXISTS events_user_id ON events (user_id)",
        "CREATE INDEX IF NOT EXISTS events_anonymous_id ON events (anonymous_id)",
        "CREATE INDEX IF NOT EXISTS memberships_segment ON memberships (segment, profile_id)",
        PG_EPOCH_MS_DDL,
    ]
    return out


def question_marks_to_pyformat(sql: str) -> str:
    """DuckDB's ``?`` placeholders -> psycopg's ``%s`` (``%`` escaped; quoted text left alone).

    >>> question_marks_to_pyformat("SELECT '?', x % 2 FROM t WHERE a = ? AND b LIKE 'a%'")
    "SELECT '?', x %% 2 FROM t WHERE a = %s AND b LIKE 'a%%'"
    """
    parts = re.split(r"('(?:[^']|'')*')", sql)
    out = []
    for i, part in enumerate(parts):
        part = part.replace("%", "%%")
        out.append(part if i % 2 else part.replace("?", "%s"))
    return "".join(out)


class PgConnection:
    """A psycopg connection that speaks like a DuckDB connection to segflow's callers."""

    dialect = DIALECT

    def __init__(self, con: Any) -> None:
        self.raw = con

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """Run ``sql`` (``?`` placeholders with a sequence, ``%(name)s`` with a dict)."""
        import psycopg

        if not params:  # no parameters: psycopg reads the text as it is
            query, params = sql, None
        elif not isinstance(params, dict):
            query = question_marks_to_pyformat(sql)
        else:
            query = sql
        try:
            return self.raw.execute(query, params)
        except psycopg.errors.UndefinedTable as exc:
            raise QueryError(sql, str(exc).strip(), undefined_table=True) from exc
        except psycopg.Error as exc:
            raise QueryError(sql, str(exc).strip()) from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(question_marks_to_pyformat(sql), rows)

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_postgres(dsn: str, *, schema: bool = True, timeout_s: float = 30.0) -> PgConnection:
    """Open the warehouse database (autocommit); with ``schema``, create what is missing."""
    try:
        import psycopg
    except ImportError as exc:  # the optional extra is not installed
        raise WarehouseUnavailable(
            "warehouse.engine = postgres needs psycopg: pip install 'segflow[postgres]'"
        ) from exc
    try:
        raw = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout_s)))
    except psycopg.OperationalError as exc:
        raise WarehouseUnavailable(f"cannot reach the PostgreSQL warehouse: {exc}") from exc
    con = PgConnection(raw)
    if schema:
        ensure_postgres_schema(con)
    return con


def ensure_postgres_schema(con: PgConnection) -> None:
    """Create every table, view and function that does not exist yet, in one transaction."""
    if _current(con):
        return
    with con.raw.transaction():
        con.raw.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        for ddl in postgres_ddl():
            con.raw.execute(ddl)
        con.raw.execute(
            "INSERT INTO warehouse_meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
            [str(SCHEMA_VERSION)],
        )


def _current(con: PgConnection) -> bool:
    found = con.raw.execute("SELECT to_regclass('warehouse_meta') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return False
    row = con.raw.execute(
        "SELECT value FROM warehouse_meta WHERE key = 'schema_version'"
    ).fetchone()
    return row is not None and row[0] == str(SCHEMA_VERSION)


def dialect_of(con: Any) -> str:
    """The SQL dialect of a warehouse connection (``duckdb`` unless it says otherwise).

    >>> import duckdb
    >>> dialect_of(duckdb.connect())
    'duckdb'
    """
    return str(getattr(con, "dialect", "duckdb"))
