"""The sessions model: events split by inactivity, per profile (built with SQLGlot).

A session is a run of a profile's *active* events (``warehouse.active_event_types``) with no
gap longer than ``warehouse.session_gap_minutes``. Columns: ``profile_id, session_index,
session_id, started_at_ms, ended_at_ms, duration_ms, event_count, source_id, landing_page``
(``source_id`` and ``landing_page`` come from the session's first event; the landing page is
``context.page.url``, else ``properties.url``).

>>> from segflow.config import WarehouseSettings
>>> sql = sessions_query(WarehouseSettings(session_gap_minutes=10)).sql("duckdb")
>>> "600000" in sql
True
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from segflow.clock import MINUTE_MS
from segflow.config import WarehouseSettings
from segflow.rules.sql.dialects import engine

AS_OF = "$as_of"


def _p(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="duckdb")


def active_events(
    settings: WarehouseSettings,
    source: str = "profile_events",
    *,
    point_in_time: bool = False,
    detail: bool = True,
    dialect: str = "duckdb",
) -> exp.Select:
    """Active events (``profile_id, timestamp_ms, message_id`` and, with ``detail``,
    ``source_id, landing``), up to ``$as_of`` when ``point_in_time``."""
    types = exp.In(
        this=exp.column("type"), expressions=[exp.convert(t) for t in settings.active_event_types]
    )
    columns: list[str | exp.Expr] = ["profile_id", "timestamp_ms", "message_id"]
    if detail:
        e = engine(dialect)
        page = e.text(exp.column("context"), ("page", "url"))
        url = e.text(exp.column("properties"), ("url",))
        columns += ["source_id", exp.Coalesce(this=page, expressions=[url]).as_("landing")]
    query = (
        sqlglot.select(*columns)
        .from_(exp.to_table(source))
        .where(types)
        .where("profile_id IS NOT NULL")
    )
    if point_in_time:
        query = query.where(f"timestamp_ms <= {AS_OF}", dialect="duckdb")
    return query


def sessions_query(
    settings: WarehouseSettings,
    source: str = "profile_events",
    *,
    point_in_time: bool = False,
    events: exp.Select | None = None,
    detail: bool = True,
    dialect: str = "duckdb",
) -> exp.Select:
    """One row per session; with ``point_in_time`` only events at or before ``$as_of`` count.

    Without ``detail`` the session's ``source_id`` and ``landing_page`` are left out (the
    features model does not need them and skips the JSON extraction).
    """
    gap_ms = settings.session_gap_minutes * MINUTE_MS
    base = events or active_events(
        settings, source, point_in_time=point_in_time, detail=detail, dialect=dialect
    )
    marked = sqlglot.select(
        "*",
        _p(
            "CASE WHEN timestamp_ms - lag(timestamp_ms) OVER (PARTITION BY profile_id "
            f"ORDER BY timestamp_ms, message_id) <= {gap_ms} THEN 0 ELSE 1 END"
        ).as_("is_start"),
    ).from_(base.subquery("a"))
    numbered = sqlglot.select(
        "*",
        _p(
            "sum(is_start) OVER (PARTITION BY profile_id ORDER BY timestamp_ms, message_id "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        ).as_("session_index"),
    ).from_(marked.subquery("m"))
    columns: list[str | exp.Expr] = [
        "profile_id",
        "session_index",
        _p("profile_id || ':' || CAST(session_index AS VARCHAR)").as_("session_id"),
        _p("min(timestamp_ms)").as_("started_at_ms"),
        _p("max(timestamp_ms)").as_("ended_at_ms"),
        _p("max(timestamp_ms) - min(timestamp_ms)").as_("duration_ms"),
        _p("count(*)").as_("event_count"),
    ]
    if detail:
        first_by, ts = engine(dialect).first_by, exp.column("timestamp_ms")
        columns += [
            first_by(exp.column("source_id"), ts).as_("source_id"),
            first_by(exp.column("landing"), ts.copy()).as_("landing_page"),
        ]
    return (
        sqlglot.select(*columns)
        .from_(numbered.subquery("n"))
        .group_by("profile_id", "session_index")
    )


def sessions_sql(
    settings: WarehouseSettings | None = None,
    source: str = "profile_events",
    *,
    dialect: str = "duckdb",
    point_in_time: bool = False,
) -> str:
    """The sessions model as SQL text for ``dialect`` (``duckdb``, ``postgres``, ``spark``, ...)."""
    query = sessions_query(
        settings or WarehouseSettings(), source, point_in_time=point_in_time, dialect=dialect
    )
    return query.sql(dialect=dialect, pretty=True)
