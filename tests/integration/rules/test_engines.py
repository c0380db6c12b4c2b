"""The differential test on every engine: incremental members == the SQL compiler's members
executed on PostgreSQL, ClickHouse (chDB, in process) and Spark SQL (PySpark, local mode).

The histories, rules and checkpoints are test_differential.py's (which runs them on DuckDB);
each engine gets the SQL compiled for its dialect. Spark answers a query in ~0.1-1 s, so it
gets fewer generated examples than the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.rules.test_differential import (
    DOC_SEGMENTS,
    DOC_TRAITS,
    Arrival,
    Differential,
    _assert_agree,
    check_documented_witnesses,
    check_window_edges,
    checkpoints,
    clusters,
    definitions,
    draw_boundaries,
    grid_check,
    histories,
    models,
)
from tests.support.engines import (
    Backend,
    ClickHouseBackend,
    PostgresBackend,
    SparkBackend,
    unavailable,
)

from segflow.rules import parse

ENGINES = ["postgres", "clickhouse", "spark"]
Factory = Callable[[], Backend]


@pytest.fixture(
    params=[pytest.param(e, marks=[pytest.mark.spark] if e == "spark" else []) for e in ENGINES]
)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _factory(name: str, request: pytest.FixtureRequest) -> Factory:
    if name == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        return lambda: PostgresBackend(dsn)
    if name == "spark":
        spark = request.getfixturevalue("spark_session")
        return lambda: SparkBackend(spark)
    try:
        import chdb  # noqa: F401
    except ImportError as exc:
        unavailable("ClickHouse (chDB)", f"chdb is not installed ({exc})")
    return ClickHouseBackend


@pytest.fixture
def backends(engine_name: str, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """A factory of fresh backends of ``engine_name``, closed after the test."""
    make = _factory(engine_name, request)
    opened: list[Backend] = []

    def fresh() -> Backend:
        opened.append(make())
        return opened[-1]

    yield fresh
    for db in opened:
        db.close()


def test_documented_examples_on_every_engine(backends: Factory, engine_name: str) -> None:
    # Spark plans each correlated query for seconds: T written in only (one query per rule)
    placeholders = engine_name != "spark"
    check_documented_witnesses(backends, placeholders)


def test_window_edges_on_every_engine(backends: Factory, engine_name: str) -> None:
    if engine_name == "spark":
        pytest.skip(
            "~50 queries of several seconds each on Spark: SEGFLOW_SPARK_EXAMPLES runs more"
        )
    check_window_edges(backends)


SPARK_EXAMPLES = int(os.environ.get("SEGFLOW_SPARK_EXAMPLES", "0"))
# the default suite runs a quick sample; `make test-long` five times as many (the `_deep` tests)
GENERATED = {"postgres": 6, "clickhouse": 6, "spark": max(SPARK_EXAMPLES, 1)}


def _generated(name: str, deep: bool = False) -> Callable[..., None]:
    @pytest.mark.slow
    @settings(
        max_examples=GENERATED[name] * (5 if deep else 1),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(histories(), definitions(), models, clusters, checkpoints, st.data())
    def check(
        request: pytest.FixtureRequest,
        arrivals: list[Arrival],
        defs: tuple[dict[str, str], dict[str, str]],
        scores: Any,
        labels: Any,
        offsets: list[int],
        data: st.DataObject,
    ) -> None:
        if name == "spark" and not SPARK_EXAMPLES:
            pytest.skip("generated rules on Spark take minutes each: set SEGFLOW_SPARK_EXAMPLES=N")
        segments, traits = defs
        for text in segments.values():
            assert parse(text).condition is not None
        make = _factory(name, request)
        db = make()
        try:
            diff = Differential(db, segments, traits, scores, labels)
            edges = draw_boundaries(data, arrivals, segments, traits, per_kind=2)
            _assert_agree(diff, arrivals, offsets, edges)
        finally:
            db.close()

    check.__name__ = f"test_generated_rules_agree_on_{name}{'_deep' if deep else ''}"
    return check


test_generated_rules_agree_on_postgres = _generated("postgres")


@pytest.mark.slow
@pytest.mark.parametrize("depth", ["quick", pytest.param("deep", marks=pytest.mark.long)])
def test_the_grid_query_gives_the_per_instant_members_on_postgres(
    postgres_dsn: str, depth: str
) -> None:
    opened: list[Backend] = []

    def fresh() -> Backend:
        opened.append(PostgresBackend(postgres_dsn))
        return opened[-1]

    try:
        grid_check(fresh, 40 if depth == "deep" else 6)()
    finally:
        for db in opened:
            db.close()


test_generated_rules_agree_on_clickhouse = _generated("clickhouse")
test_generated_rules_agree_on_postgres_deep = pytest.mark.long(_generated("postgres", deep=True))
test_generated_rules_agree_on_clickhouse_deep = pytest.mark.long(
    _generated("clickhouse", deep=True)
)
test_generated_rules_agree_on_spark = pytest.mark.spark(_generated("spark"))


@pytest.mark.slow
@pytest.mark.long  # ~30 s; the generated rules run on both engines in `make test`
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(histories(), models, clusters, checkpoints, st.data())
def test_documented_rules_agree_on_postgres_and_clickhouse(
    request: pytest.FixtureRequest,
    arrivals: list[Arrival],
    scores: Any,
    labels: Any,
    offsets: list[int],
    data: st.DataObject,
) -> None:
    for name in ("postgres", "clickhouse"):
        db = _factory(name, request)()
        try:
            diff = Differential(db, DOC_SEGMENTS, DOC_TRAITS, scores, labels)
            edges = draw_boundaries(data, arrivals, DOC_SEGMENTS, DOC_TRAITS, per_kind=1)
            _assert_agree(diff, arrivals, offsets, edges, literal=False)
        finally:
            db.close()


# --- the features model (segflow.warehouse.features) on every engine ------------------------------

FEATURE_EVENTS = [
    # (profile, message, type, event, days before T, properties, context)
    ("p1", "m1", "track", "Order Completed", 40, {"revenue": 100}, {}),
    ("p1", "m2", "track", "Order Completed", 10, {"revenue": 20.5}, {"page": {"url": "/a"}}),
    ("p1", "m3", "track", "Report Built", 9.99, {}, {}),
    ("p1", "m4", "page", None, 2, {"url": "/b"}, {}),
    ("p1", "m5", "track", "Support Ticket Created", 1.99, {}, {}),
    ("p2", "m6", "track", "Order Completed", 1, {"revenue": "12.5"}, {}),
    ("p2", "m7", "track", "Invite", 0.5, {"revenue": True}, {}),
    ("p3", "m8", "screen", None, 100, {}, {}),
    ("p3", "m9", "track", "Order Completed", -1, {"revenue": 5}, {}),  # after T: not counted
]


def _feature_rows(T: int) -> list[list[Any]]:
    import json

    day = 86_400_000
    return [
        [p, m, "web", kind, ev, None, int(T - d * day), None, f"a-{p}", json.dumps(props), "{}",
         json.dumps(ctx)]
        for p, m, kind, ev, d, props, ctx in FEATURE_EVENTS
    ]  # fmt: skip


def test_features_model_on_every_engine(backends: Factory, engine_name: str) -> None:
    from sqlglot import exp
    from tests.support.engines import DuckDBBackend

    from segflow.config import CustomFeature, WarehouseSettings
    from segflow.warehouse.features import features_query

    T = 1_700_000_000_000
    settings = WarehouseSettings(
        key_features=("Report Built", "Invite"),
        custom_features=(
            CustomFeature(name="pages", sql="count(*) FILTER (WHERE type = 'page')", window_days=7),
            CustomFeature(name="orders_30d", rule='count("Order Completed" in last 30 days)'),
        ),
    )

    def bind(node: exp.Expr) -> exp.Expr:
        is_t = isinstance(node, exp.Placeholder) and node.name == "as_of"
        return exp.Literal.number(T) if is_t else node

    results = {}
    for db in (DuckDBBackend(None), backends()):
        if db.dialect == "duckdb":
            import duckdb

            db.con = duckdb.connect()
            db.con.execute("SET TimeZone = 'UTC'")
            from tests.support.engines import COLUMNS, _ddl

            for table in COLUMNS:
                db.con.execute(_ddl("duckdb", table))
        db.insert("profile_events", _feature_rows(T))
        for i, s in enumerate((settings, WarehouseSettings())):
            sql = features_query(s, "profile_events", db.dialect).transform(bind).sql(db.dialect)
            results.setdefault(i, []).append(sorted(db.query(sql)))
        if db.dialect == "duckdb":
            db.close()
    for duck_rows, engine_rows in results.values():
        assert len(duck_rows) == len(engine_rows) == 3
        for want, got in zip(duck_rows, engine_rows, strict=True):
            got = [float(v) if type(v).__name__ == "Decimal" else v for v in got]
            assert got[0] == want[0]
            for g, w in zip(got[1:], want[1:], strict=True):  # None: a custom feature with no rows
                assert g == (None if w is None else pytest.approx(w, rel=1e-9)), (want, got)
