"""A segment's size over time, as the warehouse recorded it: what the sizes chart of
``GET /api/v1/segments/NAME`` and the console's segments page draw.

>>> import duckdb
>>> con = duckdb.connect()
>>> _ = con.execute("CREATE TABLE memberships (profile_id TEXT, segment TEXT,"
...                 " entered_at_ms BIGINT, exited_at_ms BIGINT)")
>>> _ = con.execute("INSERT INTO memberships VALUES ('p1', 'a', 10, 30), ('p2', 'a', 20, NULL)")
>>> size_history(con, ["a"], [5, 25, 35])
{'a': [0, 2, 1]}
"""

from __future__ import annotations

import duckdb

from segflow.clock import DAY_MS


def size_history(
    con: duckdb.DuckDBPyConnection, segments: list[str], at_ms: list[int]
) -> dict[str, list[int]]:
    """How many profiles segflow had recorded in each segment at each of ``at_ms`` (the
    warehouse's membership intervals, processing time): ``{segment: [size at at_ms[0], ...]}``.
    Portable SQL (DuckDB and PostgreSQL). Valid-time sizes: ``SegmentService.sizes``."""
    rows = con.execute(
        "SELECT s.segment, t.at_ms, count(DISTINCT m.profile_id)"
        " FROM (SELECT unnest(CAST(? AS BIGINT[])) AS at_ms) t"
        " CROSS JOIN (SELECT unnest(CAST(? AS VARCHAR[])) AS segment) s"
        " LEFT JOIN memberships m ON m.segment = s.segment AND m.entered_at_ms <= t.at_ms"
        " AND (m.exited_at_ms IS NULL OR m.exited_at_ms > t.at_ms) GROUP BY 1, 2",
        [at_ms, segments],
    ).fetchall()
    found = {(s, t): int(n) for s, t, n in rows}
    return {s: [found.get((s, t), 0) for t in at_ms] for s in segments}


def days_back(now_ms: int, days: int) -> list[int]:
    """``days + 1`` instants a day apart, ending at ``now_ms`` (oldest first).

    >>> days_back(10 * DAY_MS, 2) == [8 * DAY_MS, 9 * DAY_MS, 10 * DAY_MS]
    True
    """
    return [now_ms - (days - i) * DAY_MS for i in range(days + 1)]
