"""Erasing a person from the warehouse, and rewriting the file so no deleted bytes remain.

:func:`erase` runs as a warehouse-loader command (the loader is the file's only writer; see
:meth:`segflow.warehouse.loader.WarehouseLoader.submit`), in one transaction. It deletes, in
**every** table of the warehouse (so tables added later — features, ML outputs — are covered
without a list to keep up to date):

- rows whose ``profile_id``, ``survivor``, ``absorbed`` or ``merged_into`` is one of the
  profiles (also the fallback ids ``user:<userId>`` / ``anon:<anonymousId>`` that
  ``profile_events`` gives events not linked yet);
- rows whose ``user_id``, ``anonymous_id``, ``previous_id`` or ``id_value`` is one of the
  identifiers' values;
- in ``events``, the events on the profiles' timelines, by their place in the log
  (``log_partition``, ``log_offset``): that also finds an event none of whose identifiers is
  the person's any more (an anonymousId whose link the merge rules refused).

DuckDB marks deleted rows and frees blocks without overwriting them, so deleted values stay
in the file until it is rewritten. :func:`rewrite` copies the database into a fresh file
(``COPY FROM DATABASE``: tables with their keys, views, sequences, macros) and swaps it in;
it needs the file to itself (:func:`exclusive`).

>>> import duckdb
>>> from segflow.warehouse.schema import ensure_schema
>>> con = duckdb.connect(); ensure_schema(con)
>>> _ = con.execute("INSERT INTO identities VALUES ('email', 'a@b.co', 'p1', 1, 1)")
>>> erase(con, ["p1"], [("email", "a@b.co")], [])["identities"]
1
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from segflow.db.files import fsync_path
from segflow.warehouse.exceptions import WarehouseBusy

PROFILE_COLUMNS = ("profile_id", "survivor", "absorbed", "merged_into")
IDENTIFIER_COLUMNS = ("user_id", "anonymous_id", "previous_id", "id_value")
_EXCLUSIVE: dict[str, str | bool | int | float | list[str]] = {
    "custom_user_agent": "segflow-rewrite"
}


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    rows = con.execute(
        "SELECT c.table_name, c.column_name FROM duckdb_columns() AS c"
        " JOIN duckdb_tables() AS t ON t.table_name = c.table_name"
        " AND t.schema_name = c.schema_name AND t.database_name = c.database_name"
        " WHERE c.schema_name = 'main' AND c.database_name = current_database()"
        " AND NOT t.temporary"
    ).fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def erase(
    con: Any,
    profile_ids: Sequence[str],
    identifiers: Sequence[tuple[str, str]],
    positions: Sequence[tuple[int, int]],
) -> dict[str, int]:
    """Delete the rows of these profiles, identifiers and events (``positions``: the events'
    ``(partition, offset)`` in the log), in the caller's transaction; returns rows deleted per
    table (tables with none are left out). ``con`` is DuckDB's, or the PostgreSQL engine's
    (:func:`erase_postgres`)."""
    values = sorted({v for _, v in identifiers})
    fallback = [f"user:{v}" for t, v in identifiers if t == "user_id"]
    fallback += [f"anon:{v}" for t, v in identifiers if t == "anonymous_id"]
    ids = sorted({*profile_ids, *fallback})
    if getattr(con, "dialect", "duckdb") == "postgres":
        return erase_postgres(con, ids, values, positions)
    con.register("_erase_profiles", pa.table({"v": ids}))
    con.register("_erase_values", pa.table({"v": pa.array(values, pa.string())}))
    con.register(
        "_erase_events",
        pa.table(
            {
                "p": pa.array([p for p, _ in positions], pa.int32()),
                "o": pa.array([o for _, o in positions], pa.int64()),
            }
        ),
    )
    try:
        return _erase_all(con)
    finally:
        for name in ("_erase_profiles", "_erase_values", "_erase_events"):
            con.unregister(name)


def _erase_all(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, columns in sorted(_tables(con).items()):
        quoted = '"' + table.replace('"', '""') + '"'
        deleted = 0
        if table == "events":
            deleted += _count(
                con.execute(
                    "DELETE FROM events USING _erase_events AS k"
                    " WHERE events.log_partition = k.p AND events.log_offset = k.o"
                )
            )
        conds = [f"{c} IN (SELECT v FROM _erase_profiles)" for c in PROFILE_COLUMNS if c in columns]
        conds += [
            f"{c} IN (SELECT v FROM _erase_values)" for c in IDENTIFIER_COLUMNS if c in columns
        ]
        if conds:
            deleted += _count(con.execute(f"DELETE FROM {quoted} WHERE {' OR '.join(conds)}"))
        if deleted:
            counts[table] = deleted
    return counts


def erase_postgres(
    con: Any, ids: Sequence[str], values: Sequence[str], positions: Sequence[tuple[int, int]]
) -> dict[str, int]:
    """:func:`erase` on the PostgreSQL engine (``segflow.warehouse.postgres.PgConnection``):
    the same tables and columns, found in ``information_schema``, with array parameters."""
    rows = con.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns AS c"
        " JOIN information_schema.tables AS t ON t.table_schema = c.table_schema"
        " AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
    ).fetchall()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    counts: dict[str, int] = {}
    for table, columns in sorted(tables.items()):
        quoted = '"' + table.replace('"', '""') + '"'
        deleted = 0
        if table == "events" and positions:
            deleted += con.execute(
                "DELETE FROM events WHERE (log_partition, log_offset) IN"
                " (SELECT * FROM unnest(?::int[], ?::bigint[]))",
                [[p for p, _ in positions], [o for _, o in positions]],
            ).rowcount
        conds = [(c, list(ids)) for c in PROFILE_COLUMNS if c in columns]
        conds += [(c, list(values)) for c in IDENTIFIER_COLUMNS if c in columns]
        if conds:
            where = " OR ".join(f"{c} = ANY(?)" for c, _ in conds)
            deleted += con.execute(
                f"DELETE FROM {quoted} WHERE {where}", [v for _, v in conds]
            ).rowcount
        if deleted:
            counts[table] = deleted
    return counts


def _count(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def exclusive(path: str | Path, timeout_s: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that is the only one open on ``path`` in this process and others.

    Other processes are kept out by DuckDB's file lock. Inside one process DuckDB shares one
    database instance between connections to a file, and a rewritten file swapped under an
    open instance would be lost to it; opening with a configuration of our own fails while
    any other connection of this process is open (and makes theirs wait while we hold it:
    ``segflow.warehouse.connection.connect`` retries), so holding this connection proves
    nobody else has the file. Raises :class:`WarehouseBusy` after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            con = duckdb.connect(str(path), config=_EXCLUSIVE)
            break
        except (duckdb.ConnectionException, duckdb.IOException) as exc:
            if time.monotonic() >= deadline:
                raise WarehouseBusy(str(path)) from exc
            time.sleep(0.05)
    try:
        yield con
    finally:
        con.close()


def rewrite(path: str | Path, timeout_s: float = 30.0) -> int:
    """Rewrite the database at ``path`` into a fresh file and swap it in; returns the new
    size in bytes. Deleted rows and freed blocks of the old file are not copied."""
    path = Path(path)
    fresh = path.with_name(path.name + ".rewrite")
    for stale in (fresh, Path(f"{fresh}.wal")):
        stale.unlink(missing_ok=True)
    with exclusive(path, timeout_s) as con:
        con.execute("CHECKPOINT")
        Path(f"{path}.wal").unlink(missing_ok=True)  # checkpointed: nothing left in it
        name = con.execute("SELECT current_database()").fetchone()
        assert name is not None
        con.execute(f"ATTACH '{_sql_text(str(fresh))}' AS segflow_rewrite")
        con.execute(f'COPY FROM DATABASE "{name[0]}" TO segflow_rewrite')
        con.execute("DETACH segflow_rewrite")
        fsync_path(fresh)
        os.replace(fresh, path)  # still holding the old file: nobody opens it meanwhile
        fsync_path(path.parent)
    return path.stat().st_size


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
