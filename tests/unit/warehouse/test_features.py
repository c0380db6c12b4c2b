from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segflow.clock import DAY_MS, MINUTE_MS
from segflow.config import CustomFeature, WarehouseSettings
from segflow.log.base import Record
from segflow.warehouse.batches import events_table
from segflow.warehouse.exceptions import FeatureDefinitionError
from segflow.warehouse.features import compute_features, features_sql, parse_custom_feature
from segflow.warehouse.schema import ensure_schema
from segflow.warehouse.sessions import sessions_sql

T0 = 1_700_000_000_000
GOLDEN = Path(__file__).parent / "golden"


def _con(events) -> duckdb.DuckDBPyConnection:  # type: ignore[no-untyped-def]
    con = duckdb.connect()
    ensure_schema(con)
    if events:
        table = events_table([Record(0, i, e) for i, e in enumerate(events)], loaded_at_ms=0)
        con.register("t", table)
        con.execute("INSERT INTO events SELECT * FROM t")
        con.unregister("t")
    return con


def _features(
    con: duckdb.DuckDBPyConnection, at_ms: int, s: WarehouseSettings | None = None
) -> dict[str, dict[str, object]]:
    compute_features(con, at_ms, s)
    cur = con.execute("SELECT * FROM features ORDER BY profile_id")
    names = [d[0] for d in cur.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def test_mission_features_on_a_known_history(event_factory) -> None:
    s = WarehouseSettings(key_features=("Report Built", "Export", "Invite"))
    t = T0
    events = [
        event_factory(
            user_id="u1",
            timestamp_ms=t - 40 * DAY_MS,
            event="Order Completed",
            properties={"revenue": 100},
        ),
        event_factory(
            user_id="u1",
            timestamp_ms=t - 10 * DAY_MS,
            event="Order Completed",
            properties={"revenue": 20.5},
        ),
        event_factory(
            user_id="u1", timestamp_ms=t - 10 * DAY_MS + 5 * MINUTE_MS, event="Report Built"
        ),
        event_factory(user_id="u1", timestamp_ms=t - 2 * DAY_MS, event="Export"),
        event_factory(
            user_id="u1",
            timestamp_ms=t - 2 * DAY_MS + 10 * MINUTE_MS,
            event="Support Ticket Created",
        ),
        event_factory(
            user_id="u1",
            timestamp_ms=t - 100 * DAY_MS,
            event="Order Completed",
            properties={"revenue": 999},
        ),
        event_factory(user_id="u2", timestamp_ms=t - 1 * DAY_MS, event="Invite"),
    ]
    f = _features(_con(events), t, s)
    u1 = f["user:u1"]
    assert u1["recency"] == pytest.approx(2 - 10 / 1440)
    assert u1["frequency_30d"] == 2  # sessions at -10d and -2d
    assert u1["monetary_value_90d"] == pytest.approx(120.5)
    assert u1["orders_90d"] == 2
    assert u1["feature_adoption_rate"] == pytest.approx(2 / 3)
    assert u1["support_tickets_60d"] == 1
    assert u1["avg_session_duration"] == pytest.approx((0 + 0 + 5 + 10) / 4)
    assert u1["tenure_days"] == pytest.approx(100)
    assert f["user:u2"]["recency"] == pytest.approx(1)
    assert (u1["m_score"], f["user:u2"]["m_score"]) == (5, 3)
    assert (u1["r_score"], f["user:u2"]["r_score"]) == (3, 5)


def test_custom_features_are_configuration(event_factory) -> None:
    s = WarehouseSettings(
        custom_features=(
            CustomFeature(
                name="pages_7d", sql="count(*) FILTER (WHERE type = 'page')", window_days=7
            ),
            CustomFeature(name="plans", sql="count(DISTINCT properties->>'$.plan')"),
        )
    )
    events = [
        event_factory(type="page", event=None, name="Home", timestamp_ms=T0 - DAY_MS),
        event_factory(type="page", event=None, name="Home", timestamp_ms=T0 - 9 * DAY_MS),
        event_factory(properties={"plan": "a"}, timestamp_ms=T0 - 20 * DAY_MS),
        event_factory(properties={"plan": "b"}, timestamp_ms=T0 - 30 * DAY_MS),
    ]
    u1 = _features(_con(events), T0, s)["user:u1"]
    assert (u1["pages_7d"], u1["plans"]) == (1, 2)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("count(", "parse"),
        ("SELECT 1", "statement"),
        ("sum(x)", "unknown columns"),
        ("timestamp_ms + 1", "aggregate"),
        ("sum((SELECT 1))", "subqueries"),
    ],
)
def test_bad_custom_features_are_refused(sql: str, reason: str) -> None:
    with pytest.raises(FeatureDefinitionError, match=reason):
        parse_custom_feature(CustomFeature(name="f", sql=sql))


def test_custom_feature_cannot_shadow_a_builtin() -> None:
    with pytest.raises(FeatureDefinitionError):
        parse_custom_feature(CustomFeature(name="recency", sql="count(*)"))


def test_sessions_split_on_inactivity(event_factory) -> None:
    gap = 30 * MINUTE_MS
    events = [
        event_factory(
            timestamp_ms=T0, context={"page": {"url": "https://x/landing"}}, source_id="ios"
        ),
        event_factory(timestamp_ms=T0 + gap),  # exactly the gap: same session
        event_factory(timestamp_ms=T0 + 2 * gap + 1),  # more than the gap: new session
        event_factory(type="identify", event=None, timestamp_ms=T0 + 3 * gap),  # not active
    ]
    con = _con(events)
    rows = con.execute(
        f"SELECT session_index, duration_ms, event_count, source_id, landing_page FROM ({sessions_sql()}) ORDER BY 1"
    ).fetchall()
    assert rows == [(1, gap, 2, "ios", "https://x/landing"), (2, 0, 1, "web", None)]


_event = st.builds(
    dict,
    user=st.sampled_from(["a", "b", "c"]),
    offset_min=st.integers(min_value=-200 * 24 * 60, max_value=5 * 24 * 60),
    name=st.sampled_from(["Order Completed", "Support Ticket Created", "Export", "Clicked"]),
    revenue=st.integers(min_value=0, max_value=500),
    type=st.sampled_from(["track", "track", "page", "identify"]),
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=st.lists(_event, max_size=25), later=st.lists(_event, min_size=1, max_size=10))
def test_events_after_t_never_change_features_at_t(history, later, event_factory) -> None:  # type: ignore[no-untyped-def]
    def build(spec: dict[str, object]):  # type: ignore[no-untyped-def]
        return event_factory(
            user_id=spec["user"], timestamp_ms=T0 + int(spec["offset_min"]) * MINUTE_MS, type=spec["type"],
            event=spec["name"] if spec["type"] == "track" else None, properties={"revenue": spec["revenue"]},
        )  # fmt: skip

    before = [build(h) for h in history if int(h["offset_min"]) <= 0]
    after = [build({**h, "offset_min": abs(int(h["offset_min"])) + 1}) for h in later]
    s = WarehouseSettings(key_features=("Export", "Clicked"))
    expected = _features(_con(before), T0, s)
    assert _features(_con(before + after), T0, s) == expected


def test_golden_spark_sql() -> None:
    s = WarehouseSettings(
        key_features=("Export",),
        custom_features=(
            CustomFeature(name="pages", sql="count(*) FILTER (WHERE type = 'page')", window_days=7),
        ),
    )
    for name, sql in (
        ("features.spark.sql", features_sql(settings=s, dialect="spark")),
        ("sessions.spark.sql", sessions_sql(s, dialect="spark")),
        ("features.postgres.sql", features_sql(settings=s, dialect="postgres")),
        ("features.clickhouse.sql", features_sql(settings=s, dialect="clickhouse")),
    ):
        path = GOLDEN / name
        # tests/integration/rules/test_engines.py runs these on each engine.
        if os.environ.get("SEGFLOW_UPDATE_GOLDEN"):  # after a deliberate change; then review
            path.write_text(sql + "\n")
        assert sql + "\n" == path.read_text(), name


def test_segment_language_features_are_computed_as_of_t(event_factory) -> None:
    s = WarehouseSettings(
        custom_features=(
            CustomFeature(name="orders_30d", rule='count("Order Completed" in last 30 days)'),
            CustomFeature(name="spent", rule='sum(revenue of "Order Completed")'),
        )
    )
    events = [
        event_factory(event="Order Completed", properties={"revenue": 7}, timestamp_ms=T0 - DAY_MS),
        event_factory(
            event="Order Completed", properties={"revenue": 5}, timestamp_ms=T0 - 40 * DAY_MS
        ),
        event_factory(
            event="Order Completed", properties={"revenue": 100}, timestamp_ms=T0 + DAY_MS
        ),
    ]
    u1 = _features(_con(events), T0, s)["user:u1"]
    assert (u1["orders_30d"], u1["spent"]) == (1, 12)


@pytest.mark.parametrize(
    "feature",
    [
        CustomFeature(name="x", rule="count(", window_days=None),
        CustomFeature(name="x", rule='did "A"'),
        CustomFeature(name="x", rule='count("A")', sql="count(*)"),
        CustomFeature(name="x"),
    ],
)
def test_bad_rule_features_are_refused(feature: CustomFeature) -> None:
    with pytest.raises(FeatureDefinitionError):
        features_sql(settings=WarehouseSettings(custom_features=(feature,)))
