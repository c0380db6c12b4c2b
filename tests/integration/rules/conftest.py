"""Fixtures for the differential test: fresh DuckDB warehouses with the canonical tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import Phase, settings

settings.register_profile("rules-debug", phases=[Phase.explicit, Phase.reuse, Phase.generate])
if os.environ.get("SEGFLOW_RULES_DEBUG"):
    settings.load_profile("rules-debug")

_SCHEMA = """
CREATE TABLE profile_events (
    profile_id VARCHAR, message_id VARCHAR, source_id VARCHAR, type VARCHAR, event VARCHAR,
    name VARCHAR, timestamp_ms BIGINT, user_id VARCHAR, anonymous_id VARCHAR,
    properties JSON, traits JSON, context JSON);
CREATE TABLE profile_scores (profile_id VARCHAR, model VARCHAR, score DOUBLE);
CREATE TABLE profile_clusters (profile_id VARCHAR, model VARCHAR, cluster VARCHAR);
"""


@pytest.fixture
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A factory of fresh DuckDB files with the warehouse's canonical tables."""
    opened: list[duckdb.DuckDBPyConnection] = []
    base = tmp_path_factory.mktemp("rules-wh")

    def make() -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(base / f"wh{len(opened)}.duckdb"))
        con.execute("SET TimeZone = 'UTC'")
        con.execute(_SCHEMA)
        opened.append(con)
        return con

    yield make
    for con in opened:
        con.close()
