"""Baseline for benchmarks.rules: the same segment rules re-run as DuckDB SQL after every batch.

What a competent user would write instead of an incremental evaluator: append each second's
events to a DuckDB table, then re-evaluate every segment with its SQL (segflow's own SQL
compiler, so both sides compute exactly the same rules).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import duckdb

from segflow.rules.sql.compiler import compile_members
from segflow.spec.events import Event

SCHEMA = """
CREATE TABLE profile_events (
    profile_id VARCHAR, message_id VARCHAR, source_id VARCHAR, type VARCHAR, event VARCHAR,
    name VARCHAR, timestamp_ms BIGINT, user_id VARCHAR, anonymous_id VARCHAR,
    properties JSON, traits JSON, context JSON);
CREATE TABLE profile_scores (profile_id VARCHAR, model VARCHAR, score DOUBLE);
CREATE TABLE profile_clusters (profile_id VARCHAR, model VARCHAR, cluster VARCHAR);
"""


def run_batches(
    rules: Mapping[str, str], batches: Sequence[Sequence[tuple[str, Event]]]
) -> dict[str, set[str]]:
    """Insert each batch, then evaluate every rule at the batch's last event time."""
    con = duckdb.connect()
    con.execute(SCHEMA)
    members: dict[str, set[str]] = {}
    for batch in batches:
        rows = [
            (
                pid,
                e.message_id,
                e.source_id,
                e.type,
                e.event,
                e.name,
                e.timestamp_ms,
                e.user_id,
                e.anonymous_id,
                json.dumps(e.properties),
                json.dumps(e.traits),
                "{}",
            )
            for pid, e in batch
        ]
        con.executemany(
            "INSERT INTO profile_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        at_ms = batch[-1][1].timestamp_ms
        for name, text in rules.items():
            sql = compile_members(text, segments=rules, at_ms=at_ms)
            members[name] = {r[0] for r in con.execute(sql).fetchall()}
    con.close()
    return members
