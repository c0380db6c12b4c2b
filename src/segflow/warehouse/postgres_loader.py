"""The warehouse loader on PostgreSQL: the DuckDB loader's micro-batches, in PostgreSQL SQL.

One micro-batch is one transaction, as on DuckDB: the events (``COPY`` into a temporary table,
then ``INSERT ... ON CONFLICT DO NOTHING`` on ``(source_id, message_id)``: loading is
idempotent on messageId), the processor's changes and the loader's cursors commit together.
The connection stays open between batches (a server has no file to release).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from segflow.clock import Clock
from segflow.config import WarehouseSettings
from segflow.log.base import EventLog
from segflow.spec.changes import (
    AnyChange,
    ChangeFeed,
    IdentityLinked,
    MembershipChange,
)
from segflow.warehouse.batches import LogBatch, events_table
from segflow.warehouse.changes import (
    CLOSE_EXITS_SQL,
    OPEN_INTERVALS_SQL,
    apply_merge,
    in_feed_order,
    membership_intervals,
    normalise_id_type,
    profile_of,
)
from segflow.warehouse.loader import WarehouseLoader
from segflow.warehouse.postgres import PgConnection, connect_postgres
from segflow.warehouse.schema import EVENT_COLUMNS

_json = msgspec.json.Encoder()
_COLUMNS = ", ".join(name for name, _ in EVENT_COLUMNS)


class PostgresLoader(WarehouseLoader):
    """:class:`WarehouseLoader` into the PostgreSQL database at ``dsn``."""

    releases_file = False

    def __init__(
        self,
        log: EventLog,
        change_feed: ChangeFeed | None,
        dsn: str,
        clock: Clock,
        settings: WarehouseSettings | None = None,
    ) -> None:
        super().__init__(log, change_feed, "postgres", clock, settings)
        self.dsn = dsn

    def _connection(self) -> PgConnection:
        if self._con is None:
            self._con = connect_postgres(self.dsn, timeout_s=self.settings.lock_timeout_s)
        return self._con  # type: ignore[no-any-return]

    def _insert_batch(self, con: PgConnection, batch: LogBatch) -> int:
        skip = self._skip()
        records = [r for r in batch.records() if skip is None or not skip(r.event)]
        if not records:
            return 0
        rows = events_table(records, loaded_at_ms=self.clock.now_ms()).to_pylist()
        raw = con.raw
        raw.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _wh_batch (LIKE events INCLUDING DEFAULTS)"
            " ON COMMIT DELETE ROWS"
        )
        with raw.cursor() as cur:
            with cur.copy(f"COPY _wh_batch ({_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(row.values()))
            cur.execute(
                f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM _wh_batch"
                " ON CONFLICT (source_id, message_id) DO NOTHING"
            )
            return max(0, int(cur.rowcount))

    def _apply_changes(self, con: Any, changes: list[tuple[int, AnyChange]]) -> int:
        return apply_changes_postgres(con, changes)


def apply_changes_postgres(con: PgConnection, items: Sequence[tuple[int, AnyChange]]) -> int:
    """Apply ``(seq, change)`` pairs in order inside the caller's transaction (as
    ``segflow.warehouse.changes.apply_changes`` does on DuckDB); returns how many."""
    if not items:
        return 0
    con.executemany(
        "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (s, type(c).__struct_config__.tag, profile_of(c), c.at_ms, c.sequence,
             _json.encode(c).decode())
            for s, c in items
        ],
    )  # fmt: skip
    in_feed_order(items, lambda run: _apply_run(con, run), lambda s, m: apply_merge(con, s, m))
    return len(items)


def _apply_run(con: PgConnection, run: Sequence[tuple[int, AnyChange]]) -> None:
    links = [(s, c) for s, c in run if isinstance(c, IdentityLinked)]
    members = [c for _, c in run if isinstance(c, MembershipChange)]
    if links:
        _apply_links(con, links)
    if members:
        _apply_memberships(con, members)


def _temp(con: PgConnection, name: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS")
    con.execute(f"TRUNCATE {name}")
    with con.raw.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _apply_links(con: PgConnection, links: Sequence[tuple[int, IdentityLinked]]) -> None:
    rows = [(normalise_id_type(c.id_type), c.id_value, c.profile_id, c.at_ms, s) for s, c in links]
    _temp(con, "_wh_links", "id_type text, id_value text, profile_id text, at_ms bigint, seq bigint", rows)  # fmt: skip
    # A link to an already-absorbed profile points at its survivor (merged_into is chain-closed).
    resolved = """SELECT l.id_type, l.id_value, coalesce(p.merged_into, l.profile_id) AS profile_id,
                  l.at_ms, l.seq FROM _wh_links AS l LEFT JOIN profiles AS p ON p.profile_id = l.profile_id"""
    con.execute(f"INSERT INTO identity_history {resolved}")
    con.execute(
        f"""INSERT INTO identities
            SELECT DISTINCT ON (id_type, id_value) id_type, id_value, profile_id,
                   min(at_ms) OVER w, max(at_ms) OVER w
            FROM ({resolved}) AS r
            WINDOW w AS (PARTITION BY id_type, id_value)
            ORDER BY id_type, id_value, seq DESC
            ON CONFLICT (id_type, id_value) DO UPDATE
            SET profile_id = excluded.profile_id, updated_at_ms = excluded.updated_at_ms"""
    )
    con.execute(
        f"""INSERT INTO profiles SELECT profile_id, min(at_ms), NULL, NULL
            FROM ({resolved}) AS r GROUP BY profile_id ON CONFLICT DO NOTHING"""
    )


def _apply_memberships(con: PgConnection, changes: Sequence[MembershipChange]) -> None:
    rows, exits = membership_intervals(changes)
    if exits:
        _temp(con, "_wh_exits", "profile_id text, segment text, at_ms bigint",
              [(k[0], k[1], at) for k, at in exits.items()])  # fmt: skip
        con.execute(CLOSE_EXITS_SQL)
    if rows:
        _temp(con, "_wh_members", "profile_id text, segment text, entered_at_ms bigint,"
              " exited_at_ms bigint, segment_version integer", rows)  # fmt: skip
        con.execute(OPEN_INTERVALS_SQL)
