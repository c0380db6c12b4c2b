"""Profile features as of a time ``T``, read from the warehouse.

The warehouse owns the canonical ``features`` relation (one row per profile). ML needs the
same features at *past* cutoffs for point-in-time-correct training, so this module computes
them from ``profile_events`` using only events with ``timestamp_ms <= as_of_ms``. When the
warehouse's feature function exists (``segflow.warehouse.features.features_sql``) it is used
instead (it now exists; its definitions differ, e.g. frequency counts sessions); otherwise this
is the documented fallback subset:

=====================  ===========================================================
recency                days since the profile's last event
frequency_30d          events in the 30 days before T
monetary_value_90d     sum of ``properties.revenue`` (else ``total``) of ``Order Completed`` in 90 days
orders_90d             ``Order Completed`` events in 90 days
feature_adoption_rate  distinct event names used in 30 days / distinct event names in the data
support_tickets_60d    events whose name contains "ticket" in 60 days
avg_session_duration   mean seconds per session in 30 days (sessions split at 30 min of silence)
tenure_days            days since the profile's first event
=====================  ===========================================================

>>> FEATURE_COLUMNS[:3]
('recency', 'frequency_30d', 'monetary_value_90d')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from segflow.clock import DAY_MS, MINUTE_MS
from segflow.ml.exceptions import MLInputError
from segflow.ml.ltv import FloatArray
from segflow.ml.transactions import quote

FEATURE_COLUMNS: tuple[str, ...] = (
    "recency",
    "frequency_30d",
    "monetary_value_90d",
    "orders_90d",
    "feature_adoption_rate",
    "support_tickets_60d",
    "avg_session_duration",
    "tenure_days",
)
HEAVY_TAILED = frozenset(
    {
        "recency",
        "frequency_30d",
        "monetary_value_90d",
        "orders_90d",
        "support_tickets_60d",
        "avg_session_duration",
        "tenure_days",
    }
)
ORDER_EVENT = "Order Completed"


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of many profiles: ``values[i, j]`` is feature ``columns[j]`` of ``profile_ids[i]``."""

    profile_ids: list[str]
    columns: tuple[str, ...]
    values: FloatArray
    as_of_ms: int | None = None

    def column(self, name: str) -> FloatArray:
        out: FloatArray = self.values[:, self.columns.index(name)]
        return out


def fallback_features_sql(events_table: str = "profile_events") -> str:
    """SQL for the fallback features; bind ``$as_of`` (epoch ms). Only events at or before it count."""
    ev = quote(events_table)
    day, gap = f"{DAY_MS}::BIGINT", 30 * MINUTE_MS
    return f"""
    WITH e AS (SELECT profile_id, event, timestamp_ms, properties FROM {ev}
               WHERE timestamp_ms <= $as_of AND profile_id IS NOT NULL),
    n_names AS (SELECT greatest(count(DISTINCT event), 1) AS n FROM e),
    recent AS (SELECT profile_id, timestamp_ms,
                      CASE WHEN timestamp_ms - lag(timestamp_ms) OVER w > {gap} OR lag(timestamp_ms) OVER w IS NULL
                           THEN 1 ELSE 0 END AS starts
               FROM e WHERE timestamp_ms > $as_of - 30 * {day}
               WINDOW w AS (PARTITION BY profile_id ORDER BY timestamp_ms)),
    sessions AS (SELECT profile_id, (max(timestamp_ms) - min(timestamp_ms)) / 1000.0 AS secs
                 FROM (SELECT *, sum(starts) OVER (PARTITION BY profile_id ORDER BY timestamp_ms) AS sid FROM recent)
                 GROUP BY profile_id, sid),
    sess AS (SELECT profile_id, avg(secs) AS avg_session_duration FROM sessions GROUP BY profile_id)
    SELECT e.profile_id,
        ($as_of - max(e.timestamp_ms)) / {DAY_MS}.0 AS recency,
        count(*) FILTER (WHERE e.timestamp_ms > $as_of - 30 * {day}) AS frequency_30d,
        coalesce(sum(coalesce(TRY_CAST(e.properties->>'revenue' AS DOUBLE), TRY_CAST(e.properties->>'total' AS DOUBLE), 0))
            FILTER (WHERE e.event = '{ORDER_EVENT}' AND e.timestamp_ms > $as_of - 90 * {day}), 0) AS monetary_value_90d,
        count(*) FILTER (WHERE e.event = '{ORDER_EVENT}' AND e.timestamp_ms > $as_of - 90 * {day}) AS orders_90d,
        count(DISTINCT e.event) FILTER (WHERE e.timestamp_ms > $as_of - 30 * {day}) / any_value(n_names.n) AS feature_adoption_rate,
        count(*) FILTER (WHERE lower(e.event) LIKE '%ticket%' AND e.timestamp_ms > $as_of - 60 * {day}) AS support_tickets_60d,
        coalesce(any_value(sess.avg_session_duration), 0) AS avg_session_duration,
        ($as_of - min(e.timestamp_ms)) / {DAY_MS}.0 AS tenure_days
    FROM e CROSS JOIN n_names LEFT JOIN sess USING (profile_id)
    GROUP BY e.profile_id ORDER BY e.profile_id
    """


def _warehouse_features_sql() -> Callable[[str], str] | None:
    try:
        module = importlib.import_module("segflow.warehouse.features")
    except ImportError:
        return None
    fn = getattr(module, "features_sql", None)
    return fn if callable(fn) else None


def features_at(
    con: duckdb.DuckDBPyConnection,
    as_of_ms: int,
    *,
    events_table: str = "profile_events",
    columns: Sequence[str] = FEATURE_COLUMNS,
    warehouse_features: bool = True,
) -> FeatureMatrix:
    """Features of every profile seen at or before ``as_of_ms`` (point-in-time correct), from the
    warehouse's feature SQL when it exists and ``warehouse_features``, else from the fallback.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE profile_events AS SELECT 'p1' AS profile_id, 'Order Completed' AS event,"
    ...                 " 0::BIGINT AS timestamp_ms, '{\\"revenue\\": 5}'::JSON AS properties")
    >>> m = features_at(con, 86_400_000, warehouse_features=False)
    >>> m.profile_ids, float(m.column("recency")[0]), float(m.column("monetary_value_90d")[0])
    (['p1'], 1.0, 5.0)
    """
    warehouse_sql = _warehouse_features_sql() if warehouse_features else None
    sql = warehouse_sql(events_table) if warehouse_sql else fallback_features_sql(events_table)
    try:
        cols = con.execute(sql, {"as_of": int(as_of_ms)}).fetchnumpy()
    except duckdb.Error as exc:
        raise MLInputError(
            "events_table", f"cannot compute features from {events_table}: {exc}"
        ) from exc
    return _matrix(cols, columns, as_of_ms)


def read_features(
    con: duckdb.DuckDBPyConnection,
    relation: str = "features",
    columns: Sequence[str] = FEATURE_COLUMNS,
) -> FeatureMatrix:
    """Read the warehouse's current ``features`` relation (one row per profile).

    Columns the relation lacks are refused; extra columns are ignored.
    """
    select = ", ".join(quote(c) for c in ("profile_id", *columns))
    try:
        cols = con.execute(
            f"SELECT {select} FROM {quote(relation)} ORDER BY profile_id"
        ).fetchnumpy()
    except duckdb.Error as exc:
        raise MLInputError("features", f"cannot read {relation}: {exc}") from exc
    return _matrix(cols, columns, None)


def _matrix(
    cols: dict[str, np.ndarray], columns: Sequence[str], as_of_ms: int | None
) -> FeatureMatrix:
    missing = [c for c in columns if c not in cols]
    if missing:
        raise MLInputError("features", f"missing feature columns {missing}")
    n = len(cols["profile_id"])
    values = np.empty((n, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        values[:, j] = np.nan_to_num(np.asarray(cols[name], dtype=np.float64), nan=0.0)
    return FeatureMatrix([str(p) for p in cols["profile_id"]], tuple(columns), values, as_of_ms)


def behavioural_transform(
    matrix: FeatureMatrix, log_columns: frozenset[str] | None = None
) -> FloatArray:
    """``log1p`` on heavy-tailed money, counts and durations (``log_columns`` when given);
    other columns unchanged.

    >>> m = FeatureMatrix(["a"], ("frequency_30d", "feature_adoption_rate"), np.array([[np.e - 1, 0.5]]))
    >>> behavioural_transform(m).round(3).tolist()
    [[1.0, 0.5]]
    """
    out = matrix.values.copy()
    logged = HEAVY_TAILED if log_columns is None else log_columns
    for j, name in enumerate(matrix.columns):
        if name in logged:
            out[:, j] = np.log1p(np.maximum(out[:, j], 0.0))
    return out
