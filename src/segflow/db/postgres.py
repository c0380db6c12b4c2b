"""One way to open the shared PostgreSQL database (``shared.dsn``) that several hosts use.

Processes on different machines cannot share SQLite files; with ``shared.dsn`` set, the stores
they must share (the processors' state, the collectors' dedupe reservations) live in one
PostgreSQL database, each in its own tables of the ``shared.schema`` schema
(docs/scaling.md, "Many hosts"). Needs the ``postgres`` extra (psycopg 3).

>>> quote_ident('segflow')
'"segflow"'
>>> quote_ident('a"b')
'"a""b"'
"""

from __future__ import annotations

from typing import Any

from segflow.errors import ConfigError, TransientError

# pg_advisory_xact_lock keys of the shared schema (any 64-bit numbers, fixed forever)
SCHEMA_LOCK = 0x5E6F_1000


class SharedStoreUnavailable(TransientError):
    """The shared database cannot be reached (a retry may succeed)."""

    code = "shared_store_unavailable"


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def connect_shared(
    dsn: str, schema: str, *, ddl: tuple[str, ...] = (), timeout_s: float = 10.0
) -> Any:
    """An autocommit psycopg connection whose ``search_path`` is ``schema``; creates the
    schema and runs ``ddl`` (``CREATE ... IF NOT EXISTS`` statements) under an advisory lock,
    so processes starting together do not race on the catalog.

    Raises :class:`ConfigError` when psycopg is missing and :class:`SharedStoreUnavailable`
    when the server cannot be reached.
    """
    try:
        import psycopg
    except ImportError as exc:  # the optional extra is not installed
        raise ConfigError("shared.dsn needs psycopg: pip install 'segflow[postgres]'") from exc
    try:
        con = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout_s)))
    except psycopg.OperationalError as exc:
        raise SharedStoreUnavailable(f"cannot reach the shared database: {exc}") from exc
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEMA_LOCK])
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        con.execute(f"SET search_path TO {quote_ident(schema)}")
        for statement in ddl:
            con.execute(statement)
    return con
