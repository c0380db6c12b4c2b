"""Applying the processor's change feed to the warehouse, in bulk, in feed order.

Identity links and membership changes are applied as Arrow batches; a merge splits the
batch (links after a merge must see it). Merges rewrite ``identities.profile_id`` to the
survivor, so ``profile_events`` attributes every past event to the profile it belongs to now.

>>> import duckdb
>>> from segflow.warehouse.schema import ensure_schema
>>> from segflow.spec import IdentityLinked, ProfileMerged
>>> con = duckdb.connect(); ensure_schema(con)
>>> apply_changes(con, [(1, IdentityLinked(profile_id="p1", id_type="anonymous_id", id_value="a1", at_ms=1, sequence=1)),
...                     (2, ProfileMerged(survivor="p2", absorbed="p1", reason="login", at_ms=2, sequence=1))])
2
>>> con.execute("SELECT profile_id FROM identities").fetchall()
[('p2',)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import duckdb
import msgspec
import pyarrow as pa

from segflow.spec.changes import AnyChange, IdentityLinked, MembershipChange, ProfileMerged
from segflow.warehouse.batches import lines_array

ID_TYPE_ALIASES = {"userId": "user_id", "anonymousId": "anonymous_id", "groupId": "group_id"}
_json = msgspec.json.Encoder()


def normalise_id_type(id_type: str) -> str:
    """Identifier types in the warehouse are snake_case (``userId`` -> ``user_id``).

    >>> normalise_id_type("anonymousId"), normalise_id_type("email")
    ('anonymous_id', 'email')
    """
    return ID_TYPE_ALIASES.get(id_type, id_type)


def apply_changes(con: duckdb.DuckDBPyConnection, items: Sequence[tuple[int, AnyChange]]) -> int:
    """Apply ``(seq, change)`` pairs in order inside the caller's transaction; returns how many."""
    if not items:
        return 0
    _insert_changes(con, items)
    in_feed_order(items, lambda run: _apply_run(con, run), lambda s, m: apply_merge(con, s, m))
    return len(items)


def in_feed_order(
    items: Sequence[tuple[int, AnyChange]],
    apply_run: Callable[[Sequence[tuple[int, AnyChange]]], None],
    apply_merge: Callable[[int, ProfileMerged], None],
) -> None:
    """Hand ``items`` to ``apply_run`` in runs split at each merge, which goes to
    ``apply_merge`` between them (links after a merge must see it); both warehouses apply
    their changes this way.

    >>> seen = []
    >>> m = ProfileMerged(survivor="p2", absorbed="p1", reason="login", at_ms=2, sequence=1)
    >>> in_feed_order([(1, m)], lambda run: seen.append(len(run)), lambda s, _: seen.append(s))
    >>> seen
    [0, 1, 0]
    """
    run: list[tuple[int, AnyChange]] = []
    for seq, change in items:
        if isinstance(change, ProfileMerged):
            apply_run(run)
            run = []
            apply_merge(seq, change)
        else:
            run.append((seq, change))
    apply_run(run)


def profile_of(change: AnyChange) -> str:
    """The profile a change is about (a merge's survivor)."""
    return change.survivor if isinstance(change, ProfileMerged) else change.profile_id


def _insert_changes(con: duckdb.DuckDBPyConnection, items: Sequence[tuple[int, AnyChange]]) -> None:
    changes = [c for _, c in items]
    table = pa.table(
        {
            "seq": pa.array([s for s, _ in items], pa.int64()),
            "kind": [type(c).__struct_config__.tag for c in changes],
            "profile_id": [profile_of(c) for c in changes],
            "at_ms": pa.array([c.at_ms for c in changes], pa.int64()),
            "sequence": pa.array([c.sequence for c in changes], pa.int64()),
            # one JSON line a change, written in one call (no str a change: ~0.5 µs each)
            "payload": lines_array(_json.encode_lines(changes), len(changes)),
        }
    )
    con.register("_wh_changes", table)
    con.execute(
        "INSERT OR IGNORE INTO changes SELECT seq, kind, profile_id, at_ms, sequence,"
        " rtrim(payload, chr(10)) FROM _wh_changes"
    )
    con.unregister("_wh_changes")


def _apply_run(con: duckdb.DuckDBPyConnection, run: Sequence[tuple[int, AnyChange]]) -> None:
    links = [(s, c) for s, c in run if isinstance(c, IdentityLinked)]
    members = [c for _, c in run if isinstance(c, MembershipChange)]
    if links:
        _apply_links(con, links)
    if members:
        _apply_memberships(con, members)


def _apply_links(
    con: duckdb.DuckDBPyConnection, links: Sequence[tuple[int, IdentityLinked]]
) -> None:
    table = pa.table(
        {
            "id_type": [normalise_id_type(c.id_type) for _, c in links],
            "id_value": [c.id_value for _, c in links],
            "profile_id": [c.profile_id for _, c in links],
            "at_ms": pa.array([c.at_ms for _, c in links], pa.int64()),
            "seq": pa.array([s for s, _ in links], pa.int64()),
        }
    )
    con.register("_wh_links", table)
    # A link to an already-absorbed profile points at its survivor (merged_into is chain-closed).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _wh_links_resolved AS
           SELECT l.id_type, l.id_value, coalesce(p.merged_into, l.profile_id) AS profile_id, l.at_ms, l.seq
           FROM _wh_links AS l LEFT JOIN profiles AS p ON p.profile_id = l.profile_id"""
    )
    con.execute(
        """INSERT INTO identity_history SELECT id_type, id_value, profile_id, at_ms, seq
           FROM _wh_links_resolved"""
    )
    con.execute(
        """INSERT INTO identities
           SELECT id_type, id_value, arg_max(profile_id, seq), min(at_ms), max(at_ms)
           FROM _wh_links_resolved GROUP BY id_type, id_value
           ON CONFLICT (id_type, id_value) DO UPDATE
           SET profile_id = excluded.profile_id, updated_at_ms = excluded.updated_at_ms"""
    )
    con.execute(
        """INSERT INTO profiles SELECT profile_id, min(at_ms), NULL, NULL
           FROM _wh_links_resolved GROUP BY profile_id ON CONFLICT DO NOTHING"""
    )
    con.unregister("_wh_links")
    con.execute("DROP TABLE _wh_links_resolved")


# A merge, in SQL that DuckDB and PostgreSQL both run: the merge recorded, both profiles known,
# the absorbed one (and what it had absorbed: merged_into stays chain-closed) pointed at the
# survivor, and its identifiers moved over.
MERGE_SQL = (
    "INSERT INTO profile_merges VALUES (?, ?, ?, ?, ?)",
    "INSERT INTO profiles VALUES (?, ?, NULL, NULL), (?, ?, NULL, NULL) ON CONFLICT DO NOTHING",
    "UPDATE profiles SET merged_into = ?, merged_at_ms = ? WHERE profile_id = ? OR merged_into = ?",
    "UPDATE identities SET profile_id = ?, updated_at_ms = ? WHERE profile_id = ?",
)
# Membership intervals, from the temp tables _wh_exits and _wh_members (both warehouses).
CLOSE_EXITS_SQL = """UPDATE memberships AS m SET exited_at_ms = greatest(x.at_ms, m.entered_at_ms)
   FROM _wh_exits AS x
   WHERE m.profile_id = x.profile_id AND m.segment = x.segment AND m.exited_at_ms IS NULL"""
# An "entered" for a segment the profile is already in (replayed feed) opens nothing new.
OPEN_INTERVALS_SQL = """INSERT INTO memberships SELECT n.* FROM _wh_members AS n
   WHERE NOT EXISTS (SELECT 1 FROM memberships AS m WHERE m.profile_id = n.profile_id
                     AND m.segment = n.segment AND m.exited_at_ms IS NULL)"""


class Executes(Protocol):
    """A warehouse connection (DuckDB's, or :class:`~segflow.warehouse.postgres.PgConnection`)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...


def apply_merge(con: Executes, seq: int, m: ProfileMerged) -> None:
    """Apply one merge (:data:`MERGE_SQL`) inside the caller's transaction."""
    params = (
        [m.survivor, m.absorbed, m.reason, m.at_ms, seq],
        [m.survivor, m.at_ms, m.absorbed, m.at_ms],
        [m.survivor, m.at_ms, m.absorbed, m.absorbed],
        [m.survivor, m.at_ms, m.absorbed],
    )
    for sql, values in zip(MERGE_SQL, params, strict=True):
        con.execute(sql, values)


def membership_intervals(
    changes: Sequence[MembershipChange],
) -> tuple[list[tuple[str, str, int, int | None, int]], dict[tuple[str, str], int]]:
    """Fold membership changes into new intervals and exits of intervals opened earlier.

    The intervals are in recorded (processing) time, ``recorded_at_ms`` (``at_ms`` for changes
    from before it was kept): what segflow knew when. An exit is never before its entry.

    >>> ch = [MembershipChange(profile_id="p", segment="s", kind="exited", at_ms=1, sequence=1),
    ...       MembershipChange(profile_id="p", segment="s", kind="entered", at_ms=2, sequence=2,
    ...                        recorded_at_ms=9)]
    >>> membership_intervals(ch)
    ([('p', 's', 9, None, 1)], {('p', 's'): 1})
    """
    opened: dict[tuple[str, str], tuple[int, int]] = {}
    rows: list[tuple[str, str, int, int | None, int]] = []
    exits: dict[tuple[str, str], int] = {}
    for c in changes:
        key = (c.profile_id, c.segment)
        if c.kind == "entered":
            opened.setdefault(key, (c.recorded_ms, c.segment_version))
        elif key in opened:
            entered_at, version = opened.pop(key)
            rows.append((*key, entered_at, max(c.recorded_ms, entered_at), version))
        else:
            exits.setdefault(key, c.recorded_ms)
    rows.extend((*key, at, None, version) for key, (at, version) in opened.items())
    return rows, exits


def _apply_memberships(con: duckdb.DuckDBPyConnection, changes: Sequence[MembershipChange]) -> None:
    rows, exits = membership_intervals(changes)
    if exits:
        ex = pa.table(
            {
                "profile_id": [k[0] for k in exits],
                "segment": [k[1] for k in exits],
                "at_ms": pa.array(list(exits.values()), pa.int64()),
            }
        )
        con.register("_wh_exits", ex)
        con.execute(CLOSE_EXITS_SQL)
        con.unregister("_wh_exits")
    if rows:
        new = pa.table(
            {
                "profile_id": [r[0] for r in rows],
                "segment": [r[1] for r in rows],
                "entered_at_ms": pa.array([r[2] for r in rows], pa.int64()),
                "exited_at_ms": pa.array([r[3] for r in rows], pa.int64()),
                "segment_version": pa.array([r[4] for r in rows], pa.int32()),
            }
        )
        con.register("_wh_members", new)
        con.execute(OPEN_INTERVALS_SQL)
        con.unregister("_wh_members")
