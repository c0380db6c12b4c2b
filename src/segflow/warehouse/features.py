"""Behavioral features per profile as of a time ``T`` (point in time: nothing after T counts).

Built with SQLGlot from :class:`~segflow.config.WarehouseSettings`, so the same model runs on
DuckDB and transpiles to PostgreSQL, Spark SQL or ClickHouse. ``$as_of`` (epoch ms) is the
only parameter. Columns (docs/warehouse.md, "Features"):

=====================  ===============================================================
recency                days since the end of the last active session (else last event)
frequency_30d          sessions with activity in the 30 days before T
monetary_value_90d     sum of the revenue property of the order event, 90 days
orders_90d             order events, 90 days
feature_adoption_rate  share of ``key_features`` (track event names) the profile has used
support_tickets_60d    support-ticket events, 60 days
avg_session_duration   mean session length in minutes (sessions up to T)
tenure_days            days since the profile's first event
r_score/f_score/m_score RFM quintiles (1-5; 5 = most recent / most frequent / most valuable)
<custom>               one column per ``warehouse.custom_features`` entry
=====================  ===============================================================

>>> import duckdb
>>> from segflow.warehouse.schema import ensure_schema
>>> con = duckdb.connect(); ensure_schema(con)
>>> info = compute_features(con, 86_400_000)
>>> info.profiles, info.columns[:2]
(0, ('profile_id', 'recency'))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from segflow.clock import DAY_MS
from segflow.config import CustomFeature, WarehouseSettings
from segflow.rules import ast as rules_ast
from segflow.rules.exceptions import RuleSyntaxError
from segflow.rules.parser import parse_trait
from segflow.rules.sql.compiler import traits_expression
from segflow.rules.sql.dialects import engine
from segflow.warehouse.exceptions import FeatureDefinitionError
from segflow.warehouse.postgres import PgConnection, dialect_of
from segflow.warehouse.sessions import AS_OF, active_events, sessions_query

FEATURES_TABLE = "features"
EVENT_FIELDS = frozenset(
    {"profile_id", "message_id", "source_id", "type", "event", "name", "category", "timestamp_ms",
     "timestamp", "received_at_ms", "user_id", "anonymous_id", "group_id", "properties", "traits",
     "context"}
)  # fmt: skip
BUILTIN_COLUMNS: tuple[str, ...] = (
    "recency", "frequency_30d", "monetary_value_90d", "orders_90d", "feature_adoption_rate",
    "support_tickets_60d", "avg_session_duration", "tenure_days", "r_score", "f_score", "m_score",
)  # fmt: skip


@dataclass(frozen=True)
class FeaturesInfo:
    """What :func:`compute_features` built."""

    table: str
    at_ms: int
    profiles: int
    columns: tuple[str, ...]
    duration_ms: float


def _p(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="duckdb")


def _since(days: int) -> str:
    return f"timestamp_ms > {AS_OF} - {days * DAY_MS}"


def parse_custom_feature(feature: CustomFeature) -> exp.Expr:
    """Parse and check a custom feature: one aggregate expression over ``profile_events`` columns.

    >>> parse_custom_feature(CustomFeature(name="pages_7d", sql="count(*) FILTER (WHERE type = 'page')")).sql()
    "COUNT(*) FILTER(WHERE type = 'page')"
    """
    _check_name(feature)
    if feature.rule or not feature.sql:
        raise FeatureDefinitionError(feature.name, "give exactly one of sql and rule")
    try:
        tree = sqlglot.parse_one(feature.sql, read="duckdb")
    except ParseError as exc:
        raise FeatureDefinitionError(feature.name, f"does not parse: {exc}") from exc
    if not isinstance(tree, exp.Expression) or isinstance(tree, exp.Query | exp.Command | exp.DDL):
        raise FeatureDefinitionError(feature.name, "must be an expression, not a statement")
    if tree.find(exp.Subquery, exp.Select) is not None:
        raise FeatureDefinitionError(feature.name, "subqueries are not allowed")
    if tree.find(exp.AggFunc) is None:
        raise FeatureDefinitionError(feature.name, "must aggregate (count, sum, avg, ...)")
    unknown = sorted({c.name for c in tree.find_all(exp.Column)} - EVENT_FIELDS)
    if unknown:
        raise FeatureDefinitionError(feature.name, f"unknown columns {unknown}")
    return tree


def _check_name(feature: CustomFeature) -> None:
    if not feature.name.isidentifier() or feature.name.lower() in {*BUILTIN_COLUMNS, "profile_id"}:
        raise FeatureDefinitionError(feature.name, "the name must be a new SQL identifier")


def rule_features_query(
    features: Sequence[CustomFeature], dialect: str = "duckdb"
) -> exp.Select | None:
    """The segment-language features (``rule``), compiled by ``segflow.rules.sql.compiler`` at ``$as_of``.

    >>> q = rule_features_query([CustomFeature(name="orders_30d", rule='count("Order Completed" in last 30 days)')])
    >>> "$as_of" in q.sql("duckdb")
    True
    """
    traits: dict[str, str] = {}
    for feature in features:
        _check_name(feature)
        if feature.sql or feature.window_days is not None:
            raise FeatureDefinitionError(
                feature.name, "a rule feature takes neither sql nor window_days"
            )
        try:
            value = parse_trait(feature.rule).value
        except RuleSyntaxError as exc:
            raise FeatureDefinitionError(feature.name, f"does not parse: {exc}") from exc
        if not isinstance(value, rules_ast.Aggregate):
            raise FeatureDefinitionError(
                feature.name, "must be an aggregate (count, sum, avg, ...)"
            )
        traits[feature.name] = feature.rule
    if not traits:
        return None
    query = traits_expression(traits, dialect=dialect).transform(_as_of_placeholder)
    assert isinstance(query, exp.Select)
    query.set("order", None)
    return query


def _bind_as_of(at_ms: int) -> Callable[[exp.Expr], exp.Expr]:
    def bind(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder) and node.name == "as_of":
            return exp.Literal.number(at_ms)
        return node

    return bind


def _as_of_placeholder(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Placeholder) and node.name == "at_ms":
        return exp.Placeholder(this="as_of")
    return node


def _aggregates(settings: WarehouseSettings, source: str, dialect: str) -> exp.Select:
    order = exp.EQ(this=exp.column("event"), expression=exp.convert(settings.order_event))
    support = exp.EQ(this=exp.column("event"), expression=exp.convert(settings.support_event))
    e = engine(dialect)
    revenue = e.numeric_text(e.text(exp.column("properties"), (settings.revenue_property,)))
    in_90 = exp.and_(order, _p(_since(90)))
    select = sqlglot.select(
        "profile_id",
        _p("min(timestamp_ms)").as_("first_ms"),
        _p("max(timestamp_ms)").as_("last_ms"),
        exp.func("coalesce", exp.Filter(this=exp.func("sum", revenue), expression=exp.Where(this=in_90)), exp.convert(0.0)).as_("monetary_value_90d"),
        exp.Filter(this=_p("count(*)"), expression=exp.Where(this=in_90)).as_("orders_90d"),
        exp.Filter(this=_p("count(*)"), expression=exp.Where(this=exp.and_(support, _p(_since(60))))).as_("support_tickets_60d"),
        _adoption(settings),
    )  # fmt: skip
    return select.from_("e").group_by("profile_id")


def _adoption(settings: WarehouseSettings) -> exp.Expr:
    if settings.key_features:
        keys = exp.In(
            this=exp.column("event"), expressions=[exp.convert(k) for k in settings.key_features]
        )
        used = exp.Filter(this=_p("count(DISTINCT event)"), expression=exp.Where(this=keys))
        return exp.Div(this=used, expression=exp.convert(float(len(settings.key_features)))).as_(
            "feature_adoption_rate"
        )
    # No key features configured: every track event name seen by anyone up to T is one.
    return _p("count(DISTINCT event) / greatest(CAST(max(n.n_names) AS DOUBLE), 1.0)").as_("feature_adoption_rate")  # fmt: skip


def _custom_ctes(settings: WarehouseSettings) -> list[tuple[str, exp.Select, list[str]]]:
    by_window: dict[int | None, list[tuple[str, exp.Expr]]] = {}
    for feature in settings.custom_features:
        if feature.rule:
            continue
        by_window.setdefault(feature.window_days, []).append(
            (feature.name, parse_custom_feature(feature))
        )
    out = []
    for i, (days, items) in enumerate(
        sorted(by_window.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    ):
        q = sqlglot.select("profile_id", *(tree.as_(name) for name, tree in items)).from_("e")
        if days is not None:
            q = q.where(_since(days), dialect="duckdb")
        out.append((f"custom_{i}", q.group_by("profile_id"), [name for name, _ in items]))
    return out


def features_query(
    settings: WarehouseSettings | None = None,
    source: str = "profile_events",
    dialect: str = "duckdb",
) -> exp.Select:
    """The features model (one row per profile seen at or before ``$as_of``), for ``dialect``."""
    settings = settings or WarehouseSettings()
    events = sqlglot.select("*").from_(exp.to_table(source)).where(f"timestamp_ms <= {AS_OF}", dialect="duckdb").where("profile_id IS NOT NULL")  # fmt: skip
    sessions = sessions_query(
        settings, events=active_events(settings, "e", detail=False), detail=False, dialect=dialect
    )
    sess_agg = sqlglot.select(
        "profile_id",
        _p("max(ended_at_ms)").as_("last_active_ms"),
        exp.Filter(this=_p("count(*)"), expression=exp.Where(this=_p(f"ended_at_ms > {AS_OF} - {30 * DAY_MS}"))).as_("frequency_30d"),
        _p("avg(duration_ms) / 60000.0").as_("avg_session_duration"),
    ).from_("sessions").group_by("profile_id")  # fmt: skip
    n_names = (
        sqlglot.select(_p("count(DISTINCT event)").as_("n_names"))
        .from_("e")
        .where("type = 'track'")
    )
    customs = _custom_ctes(settings)
    agg = _aggregates(settings, source, dialect)
    if not settings.key_features:
        agg = agg.join("n", join_type="cross")
        agg.set("group", exp.Group(expressions=[exp.column("profile_id", "e")]))
        agg = agg.select(_p("e.profile_id").as_("profile_id"), append=False).select(
            *agg.expressions[1:]
        )
    base = sqlglot.select(
        _p("a.profile_id").as_("profile_id"),
        _p(f"({AS_OF} - coalesce(s.last_active_ms, a.last_ms)) / {float(DAY_MS)}").as_("recency"),
        _p("coalesce(s.frequency_30d, 0)").as_("frequency_30d"),
        "a.monetary_value_90d",
        "a.orders_90d",
        _p("coalesce(a.feature_adoption_rate, 0.0)").as_("feature_adoption_rate"),
        "a.support_tickets_60d",
        _p("coalesce(s.avg_session_duration, 0.0)").as_("avg_session_duration"),
        _p(f"({AS_OF} - a.first_ms) / {float(DAY_MS)}").as_("tenure_days"),
        *(exp.column(name, cte) for cte, _, names in customs for name in names),
    ).from_("agg AS a").join("sess AS s", on="s.profile_id = a.profile_id", join_type="left")  # fmt: skip
    for cte, _, _ in customs:
        base = base.join(f"{cte}", on=f"{cte}.profile_id = a.profile_id", join_type="left")
    rule_features = [f for f in settings.custom_features if f.rule]
    rules_cte = rule_features_query(rule_features, dialect)
    if rules_cte is not None:
        base = base.select(*(exp.column(f.name, "r", quoted=True) for f in rule_features))
        base = base.join("rule_features AS r", on="r.profile_id = a.profile_id", join_type="left")
    final = (
        sqlglot.select(
            "*",
            _p("CAST(ceil(5 * cume_dist() OVER (ORDER BY recency DESC)) AS INTEGER)").as_(
                "r_score"
            ),
            _p("CAST(ceil(5 * cume_dist() OVER (ORDER BY frequency_30d)) AS INTEGER)").as_(
                "f_score"
            ),
            _p("CAST(ceil(5 * cume_dist() OVER (ORDER BY monetary_value_90d)) AS INTEGER)").as_(
                "m_score"
            ),
        )
        .from_("base")
        .order_by("profile_id")
    )
    final = (
        final.with_("e", events)
        .with_("sessions", sessions)
        .with_("sess", sess_agg)
        .with_("n", n_names)
    )
    for cte, q, _ in customs:
        final = final.with_(cte, q)
    if rules_cte is not None:
        final = final.with_("rule_features", rules_cte)
    final = final.with_("agg", agg).with_("base", base)
    if dialect == "clickhouse":  # its window function names are case-sensitive
        lowered = final.transform(_lower_cume_dist)
        assert isinstance(lowered, exp.Select)
        return lowered
    return final


def _lower_cume_dist(node: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this="cume_dist") if isinstance(node, exp.CumeDist) else node


def features_sql(
    events_table: str = "profile_events",
    settings: WarehouseSettings | None = None,
    *,
    dialect: str = "duckdb",
) -> str:
    """The features model as SQL for ``dialect``; bind ``$as_of`` (epoch ms) on DuckDB.

    >>> "FILTER" in features_sql()
    True
    """
    return features_query(settings, events_table, dialect).sql(dialect=dialect, pretty=True)


def compute_features(
    con: duckdb.DuckDBPyConnection | PgConnection,
    at_ms: int,
    settings: WarehouseSettings | None = None,
    *,
    table: str = FEATURES_TABLE,
    source: str = "profile_events",
) -> FeaturesInfo:
    """Materialise the features as of ``at_ms`` into ``table`` (replaced) and describe it."""
    t0 = time.perf_counter()
    dialect = dialect_of(con)  # DuckDB, or PostgreSQL (warehouse.engine = "postgres")
    target = exp.to_table(table).sql(dialect)
    if dialect == "duckdb":
        sql = features_sql(source, settings)
        con.execute(f"CREATE OR REPLACE TABLE {target} AS {sql}", {"as_of": int(at_ms)})
    else:  # T written in: no driver-specific parameter syntax
        query = features_query(settings, source, dialect).transform(_bind_as_of(int(at_ms)))
        con.execute(f"DROP TABLE IF EXISTS {target}")
        con.execute(f"CREATE TABLE {target} AS {query.sql(dialect)}")
    con.execute(
        "INSERT INTO warehouse_meta VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [f"{table}.as_of_ms", str(int(at_ms))],
    )
    count_row = next(iter(con.execute(f"SELECT count(*) FROM {target}").fetchall()), None)
    described = con.execute(f"SELECT * FROM {target} LIMIT 0").description
    columns = tuple(getattr(d, "name", None) or d[0] for d in described)
    return FeaturesInfo(
        table,
        int(at_ms),
        int(count_row[0]) if count_row else 0,
        columns,
        (time.perf_counter() - t0) * 1000,
    )
