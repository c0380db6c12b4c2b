"""A segment's size over time, from membership intervals (what the console charts)."""

from __future__ import annotations

import duckdb

from segflow.clock import DAY_MS
from segflow.segments.sizes import days_back, size_history


def test_sizes_count_the_intervals_open_at_each_instant() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE memberships (profile_id VARCHAR, segment VARCHAR, entered_at_ms BIGINT,"
        " exited_at_ms BIGINT, segment_version INTEGER)"
    )
    con.execute(
        "INSERT INTO memberships VALUES ('p1', 'a', 10, NULL, 1), ('p2', 'a', 20, 30, 1),"
        " ('p2', 'a', 40, NULL, 1), ('p3', 'b', 5, NULL, 1)"
    )
    found = size_history(con, ["a", "b", "none"], [0, 15, 25, 35, 45])
    assert found == {"a": [0, 1, 2, 1, 2], "b": [0, 1, 1, 1, 1], "none": [0, 0, 0, 0, 0]}
    assert days_back(10 * DAY_MS, 2) == [8 * DAY_MS, 9 * DAY_MS, 10 * DAY_MS]
