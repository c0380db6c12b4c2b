"""The warehouse schema: tables, views and the loader's cursors (docs/warehouse.md).

``ensure_schema`` is idempotent; every writer calls it once per connection.

>>> import duckdb
>>> con = duckdb.connect()
>>> ensure_schema(con)
>>> con.execute("SELECT count(*) FROM profile_events").fetchone()
(0,)
"""

from __future__ import annotations

import duckdb

SCHEMA_VERSION = 1

FALLBACK_PROFILE_SQL = (
    "CASE WHEN e.user_id IS NOT NULL THEN 'user:' || e.user_id "
    "WHEN e.anonymous_id IS NOT NULL THEN 'anon:' || e.anonymous_id END"
)
"""The profile id of an event none of whose identifiers the processor has linked yet."""

EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("message_id", "VARCHAR NOT NULL"),
    ("source_id", "VARCHAR NOT NULL"),
    ("type", "VARCHAR NOT NULL"),
    ("event", "VARCHAR"),
    ("name", "VARCHAR"),
    ("category", "VARCHAR"),
    ("timestamp_ms", "BIGINT NOT NULL"),
    ("timestamp", "TIMESTAMP"),
    ("received_at_ms", "BIGINT NOT NULL"),
    ("user_id", "VARCHAR"),
    ("anonymous_id", "VARCHAR"),
    ("group_id", "VARCHAR"),
    ("previous_id", "VARCHAR"),
    ("properties", "JSON"),
    ("traits", "JSON"),
    ("context", "JSON"),
    ("log_partition", "INTEGER"),
    ("log_offset", "BIGINT"),
    ("loaded_at_ms", "BIGINT"),
)

_EVENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS events ("
    + ", ".join(f"{name} {kind}" for name, kind in EVENT_COLUMNS)
    + ", PRIMARY KEY (source_id, message_id))"
)

TABLES: tuple[str, ...] = (
    _EVENTS_DDL,
    """CREATE TABLE IF NOT EXISTS identities (id_type VARCHAR NOT NULL, id_value VARCHAR NOT NULL,
        profile_id VARCHAR NOT NULL, first_seen_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (id_type, id_value))""",
    """CREATE TABLE IF NOT EXISTS identity_history (id_type VARCHAR NOT NULL, id_value VARCHAR NOT NULL,
        profile_id VARCHAR NOT NULL, at_ms BIGINT NOT NULL, seq BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS profiles (profile_id VARCHAR PRIMARY KEY, first_seen_ms BIGINT NOT NULL,
        merged_into VARCHAR, merged_at_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS profile_merges (survivor VARCHAR NOT NULL, absorbed VARCHAR NOT NULL,
        reason VARCHAR, at_ms BIGINT NOT NULL, seq BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS memberships (profile_id VARCHAR NOT NULL, segment VARCHAR NOT NULL,
        entered_at_ms BIGINT NOT NULL, exited_at_ms BIGINT, segment_version INTEGER)""",
    """CREATE TABLE IF NOT EXISTS changes (seq BIGINT PRIMARY KEY, kind VARCHAR NOT NULL,
        profile_id VARCHAR NOT NULL, at_ms BIGINT NOT NULL, sequence BIGINT NOT NULL, payload JSON)""",
    """CREATE TABLE IF NOT EXISTS profile_scores (profile_id VARCHAR NOT NULL, model VARCHAR NOT NULL,
        score DOUBLE NOT NULL, scored_at_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS profile_clusters (profile_id VARCHAR NOT NULL, model VARCHAR NOT NULL,
        cluster VARCHAR NOT NULL, assigned_at_ms BIGINT NOT NULL, cluster_id INTEGER)""",
    """CREATE TABLE IF NOT EXISTS warehouse_cursors (name VARCHAR PRIMARY KEY, position BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS warehouse_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)""",
)

VIEWS: tuple[str, ...] = (
    f"""CREATE VIEW IF NOT EXISTS profile_events AS
        SELECT coalesce(iu.profile_id, ia.profile_id, {FALLBACK_PROFILE_SQL}) AS profile_id, e.*
        FROM events AS e
        LEFT JOIN identities AS iu ON iu.id_type = 'user_id' AND iu.id_value = e.user_id
        LEFT JOIN identities AS ia ON ia.id_type = 'anonymous_id' AND ia.id_value = e.anonymous_id""",
    """CREATE VIEW IF NOT EXISTS traits_history AS
        SELECT profile_id, message_id, source_id, timestamp_ms, traits
        FROM profile_events WHERE type = 'identify'""",
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and view that does not exist yet (idempotent)."""
    if _current(con):
        return
    con.execute("BEGIN")
    try:
        for ddl in (*TABLES, *VIEWS):
            con.execute(ddl)
        con.execute(
            "INSERT OR IGNORE INTO warehouse_meta VALUES ('schema_version', ?)",
            [str(SCHEMA_VERSION)],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _current(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'warehouse_meta' AND schema_name = 'main'"
    ).fetchall()
    if not found or not found[0][0]:
        return False
    row = next(
        iter(
            con.execute("SELECT value FROM warehouse_meta WHERE key = 'schema_version'").fetchall()
        ),
        None,
    )
    return row is not None and row[0] == str(SCHEMA_VERSION)


def log_cursor_name(partition: int) -> str:
    """The cursor row that holds the next log offset of ``partition``.

    >>> log_cursor_name(3)
    'log:3'
    """
    return f"log:{partition}"


CHANGES_CURSOR = "changes"
