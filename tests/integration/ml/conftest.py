"""Fixtures: a real DuckDB warehouse file with generated ``profile_events`` of three behaviours."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from threadpoolctl import threadpool_limits

from segflow.clock import DAY_MS

HORIZON_DAYS = 120
CATEGORIES = ("books", "music", "games", "garden")


def generate_events(n_profiles: int, seed: int = 0, days: int = HORIZON_DAYS) -> pa.Table:
    """Buyers (frequent orders), browsers (many views, rare orders), fading users (stop after a while)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[object]] = {
        k: [] for k in ("profile_id", "message_id", "event", "timestamp_ms", "properties")
    }
    for p in range(n_profiles):
        kind = p % 3
        rate = (1.2, 2.5, 0.8)[kind]
        order_share = (0.35, 0.02, 0.15)[kind]
        active_until = days if kind != 2 else int(rng.integers(20, days))
        n = rng.poisson(rate * active_until)
        times = np.sort(rng.integers(0, active_until * DAY_MS, size=n))
        for i, t in enumerate(times):
            is_order = rng.random() < order_share
            props = (
                {
                    "revenue": round(float(rng.gamma(2.0, 30.0 if kind == 0 else 10.0)), 2),
                    "category": str(rng.choice(CATEGORIES)),
                }
                if is_order
                else {}
            )
            rows["profile_id"].append(f"p{p:05d}")
            rows["message_id"].append(f"m{p}-{i}")
            rows["event"].append(
                "Order Completed"
                if is_order
                else str(
                    rng.choice(
                        ["Page Viewed", "Product Viewed", "Feature Used", "Support Ticket Created"],
                        p=[0.5, 0.3, 0.17, 0.03],
                    )
                )
            )
            rows["timestamp_ms"].append(int(t))
            rows["properties"].append(json.dumps(props))
    return pa.table(rows)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One OpenMP thread per test (the subprocesses get OMP_NUM_THREADS=1): see tests/unit/ml/conftest.py."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def warehouse(tmp_path: Path) -> Callable[..., duckdb.DuckDBPyConnection]:
    """Factory: a warehouse file with ``n`` generated profiles in ``profile_events``."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def make(n: int = 600, seed: int = 0) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(tmp_path / f"warehouse-{len(opened)}.duckdb"))
        con.register("gen", generate_events(n, seed))
        con.execute("CREATE TABLE profile_events AS SELECT profile_id, message_id, 'web' AS source_id, 'track' AS type, event,"
                    " NULL::VARCHAR AS name, timestamp_ms, NULL::VARCHAR AS user_id, profile_id AS anonymous_id,"
                    " properties::JSON AS properties, '{}'::JSON AS traits, '{}'::JSON AS context FROM gen")  # fmt: skip
        con.unregister("gen")
        opened.append(con)
        return con

    yield make
    for con in opened:
        con.close()
