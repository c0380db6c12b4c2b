"""Models scored on the fly: features as computed traits, and what live scoring needs, exported.

A model whose spec declares ``feature_traits`` (feature name -> a value expression of the
segment language, docs/segments.md) computes its features with the rule language's two
evaluators instead of the warehouse's feature SQL:

- in the warehouse, for training at every past cutoff and for batch scoring, with
  :func:`segflow.rules.sql.compiler.compile_traits` at that time over ``profile_events``
  (point in time by construction: only events at or before the cutoff exist);
- in the processor, incrementally, as computed traits named ``ml.<model>.<feature>``
  (:func:`trait_name`), so they never clash with the catalogue's traits.

The differential tests hold those two evaluators equal, so a model trained on the first
scores the second's values. A logistic propensity model (``learner="logistic"``) and a
K-Means cluster model export what scoring needs as plain numbers (:func:`export_propensity`,
:func:`export_clusters`); the processor applies the export (``segflow.stream.live``).
Gradient-boosted trees stay batch-only (docs/ml.md, "Scoring on the fly").

Every feature is ``log1p(max(x, 0))``-transformed before scaling (counts, sums and distinct
counts are heavy-tailed); a null value (``avg`` of no event) is 0.

>>> list(DEFAULT_LIVE_FEATURES)[:3]
['events_1d', 'events_7d', 'events_30d']
>>> trait_name("bundle", "events_7d")
'ml.bundle.events_7d'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.isotonic import IsotonicRegression

from segflow.ml.exceptions import FitError, MLInputError
from segflow.ml.features import FeatureMatrix
from segflow.ml.ltv import FloatArray
from segflow.rules import ast
from segflow.rules.exceptions import RuleSyntaxError
from segflow.rules.parser import parse_trait
from segflow.rules.sql.compiler import compile_traits

TRAIT_PREFIX = "ml."
NUMERIC_AGGREGATES = frozenset({"count", "sum", "avg", "min", "max", "unique_count"})

DEFAULT_LIVE_FEATURES: dict[str, str] = {
    "events_1d": "count(any event in last 1 day)",
    "events_7d": "count(any event in last 7 days)",
    "events_30d": "count(any event in last 30 days)",
    "page_views_7d": "count(page in last 7 days)",
    "product_views_7d": 'count("Product Viewed" in last 7 days)',
    "orders_90d": 'count("Order Completed" in last 90 days)',
    "revenue_90d": 'sum(revenue of "Order Completed" in last 90 days)',
    "categories_30d": "unique_count(category of any event in last 30 days)",
}
"""The documented default live feature set: recency-weighted activity (1, 7, 30 days), page
and product views, orders and revenue over 90 days, and the breadth of categories browsed."""


def trait_name(model: str, feature: str) -> str:
    """The computed trait that holds ``feature`` of ``model`` in profile state."""
    return f"{TRAIT_PREFIX}{model}.{feature}"


def live_traits(models: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Every model's features as namespaced computed traits, for the processor's rule set
    (``compile_segments(segments, {**traits, **live_traits(...)})``).

    >>> live_traits({"m": {"n": "count(any event)"}})
    {'ml.m.n': 'count(any event)'}
    """
    return {
        trait_name(model, name): expr
        for model, features in models.items()
        for name, expr in features.items()
    }


def check_features(features: Mapping[str, str]) -> None:
    """Refuse what cannot be a live feature: a syntax error, or a value that is not a number
    (``most_frequent``, ``first``, ``unique_list``, traits, scores...). Raises
    :class:`MLInputError` on field ``feature_traits`` naming the feature and the reason.

    >>> check_features({"x": "most_frequent(category of any event)"})
    Traceback (most recent call last):
    ...
    segflow.ml.exceptions.MLInputError: feature_traits: x: most_frequent(...) is not a number; use count, sum, avg, min, max or unique_count
    """
    if not features:
        raise MLInputError("feature_traits", "a live model needs at least one feature")
    for name, expr in features.items():
        try:
            value = parse_trait(expr).value
        except RuleSyntaxError as err:
            raise MLInputError("feature_traits", f"{name}: {err}") from err
        if not isinstance(value, ast.Aggregate) or value.func not in NUMERIC_AGGREGATES:
            fn = getattr(value, "func", type(value).__name__.lower())
            raise MLInputError(
                "feature_traits",
                f"{name}: {fn}(...) is not a number; use count, sum, avg, min, max or unique_count",
            )


def traits_at(
    con: duckdb.DuckDBPyConnection, features: Mapping[str, str], at_ms: int
) -> FeatureMatrix:
    """The features of every profile seen at or before ``at_ms``, computed from
    ``profile_events`` by the segment language's SQL compiler (nulls are 0).

    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE profile_events AS SELECT 'p1' AS profile_id, 'm' AS message_id,"
    ...     " 'track' AS type, 'Order Completed' AS event, NULL AS name, 5::BIGINT AS timestamp_ms,"
    ...     " NULL AS user_id, '{\\"revenue\\": 4}'::JSON AS properties, '{}'::JSON AS traits")
    >>> m = traits_at(con, {"spent": 'sum(revenue of "Order Completed")'}, at_ms=10)
    >>> m.profile_ids, m.values.tolist()
    (['p1'], [[4.0]])
    """
    check_features(features)
    names = list(features)
    sql = compile_traits({f"f{j}": features[n] for j, n in enumerate(names)}, at_ms=int(at_ms))
    seen = f"SELECT DISTINCT profile_id FROM profile_events WHERE timestamp_ms <= {int(at_ms)}"
    try:
        cols = con.execute(
            f"SELECT * FROM ({sql}) t WHERE t.profile_id IN ({seen}) ORDER BY t.profile_id"
        ).fetchnumpy()
    except duckdb.Error as exc:
        raise MLInputError("events_table", f"cannot compute live features: {exc}") from exc
    values = np.empty((len(cols["profile_id"]), len(names)), dtype=np.float64)
    for j in range(len(names)):
        values[:, j] = _numbers(cols[f"f{j}"])
    return FeatureMatrix([str(p) for p in cols["profile_id"]], tuple(names), values, at_ms)


def _numbers(column: Any) -> FloatArray:
    if np.ma.isMaskedArray(column):
        column = column.filled(np.nan)
    out: FloatArray = np.nan_to_num(np.asarray(column, dtype=np.float64), nan=0.0)
    return out


def log_transform(values: FloatArray, flags: Sequence[bool]) -> FloatArray:
    """``log1p(max(x, 0))`` on the flagged columns (the live models' only transform).

    >>> log_transform(np.array([[np.e - 1, 2.0]]), [True, False]).round(3).tolist()
    [[1.0, 2.0]]
    """
    out = np.array(values, dtype=np.float64, copy=True)
    for j, flag in enumerate(flags):
        if flag:
            out[:, j] = np.log1p(np.maximum(out[:, j], 0.0))
    return out


class LogColumns(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """:func:`log_transform` as a scikit-learn step (the logistic learner's first)."""

    def __init__(self, flags: tuple[bool, ...] = ()) -> None:
        self.flags = flags

    def fit(self, X: FloatArray, y: Any = None) -> LogColumns:
        return self

    def transform(self, X: FloatArray) -> FloatArray:
        return log_transform(X, self.flags)


def export_propensity(
    model: Any, name: str, run_id: str, features: Mapping[str, str], scores: FloatArray
) -> dict[str, Any]:
    """What scoring a logistic propensity model needs, as plain numbers: the log flags, the
    scaler's mean and scale, coefficients, intercept, the calibration (isotonic table or
    sigmoid ``a``, ``b``) and the last run's scores, sorted (the live rank's reference).

    Raises :class:`MLInputError` for a model that is not logistic (trees stay batch-only)."""
    steps = getattr(model.booster, "named_steps", {})
    if "logisticregression" not in steps:
        raise MLInputError("learner", f"{name}: only logistic models are scored live")
    scaler, logistic = steps["standardscaler"], steps["logisticregression"]
    return {
        "model": name,
        "kind": "logistic",
        "run_id": run_id,
        "features": dict(features),
        "log1p": [bool(f) for f in steps["logcolumns"].flags],
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coefficients": logistic.coef_[0].tolist(),
        "intercept": float(logistic.intercept_[0]),
        "calibration": _calibration(model.calibrated),
        "ranked_scores": np.sort(np.asarray(scores, dtype=np.float64)).tolist(),
    }


def _calibration(calibrated: CalibratedClassifierCV) -> list[dict[str, Any]]:
    """One entry per calibrated classifier (their probabilities are averaged)."""
    out = []
    for fitted in calibrated.calibrated_classifiers_:
        calibrator = fitted.calibrators[0]
        if isinstance(calibrator, IsotonicRegression):
            out.append(
                {
                    "method": "isotonic",
                    "x": calibrator.X_thresholds_.tolist(),
                    "y": calibrator.y_thresholds_.tolist(),
                }
            )
        elif hasattr(calibrator, "a_"):
            out.append({"method": "sigmoid", "a": float(calibrator.a_), "b": float(calibrator.b_)})
        else:
            raise FitError(
                "propensity", f"calibration {type(calibrator).__name__} is not exportable"
            )
    return out


def live_vs_batch(
    con: duckdb.DuckDBPyConnection, model: str, batch: FloatArray, since_ms: int | None
) -> dict[str, Any] | None:
    """The model card's comparison: the batch run's scores beside the live scores the
    processor gave since the previous run (the latest per profile, read from the warehouse's
    ``changes``: ``score_changed``), as shares of ten score bins, quantiles, and the drift
    between them (PSI, :func:`segflow.ml.metrics.psi`); None without live scores.

    >>> con = duckdb.connect()
    >>> live_vs_batch(con, "m", np.array([0.5]), None) is None  # no change feed loaded yet
    True
    """
    from segflow.ml.metrics import psi

    try:
        rows = con.execute(
            "SELECT arg_max(CAST(payload->>'new' AS DOUBLE), seq) AS score FROM changes"
            " WHERE kind = 'score_changed' AND payload->>'model' = ? AND at_ms > ?"
            " GROUP BY profile_id",
            [model, -1 if since_ms is None else int(since_ms)],
        ).fetchnumpy()
    except duckdb.Error:
        return None
    live = np.asarray(rows["score"], dtype=np.float64)
    if len(live) == 0 or len(batch) == 0:
        return None
    edges = np.linspace(0.0, 1.0, 11)

    def shares(scores: FloatArray) -> list[float]:
        counts = np.histogram(np.clip(scores, 0, 1), edges)[0]
        return [round(float(c) / len(scores), 4) for c in counts]

    def quantiles(scores: FloatArray) -> dict[str, float]:
        return {f"{q:g}": round(float(np.quantile(scores, q)), 4) for q in (0.1, 0.5, 0.9, 0.99)}

    return {
        "since_ms": since_ms,
        "profiles": {"batch": len(batch), "live": len(live)},
        "bins": [round(float(e), 1) for e in edges],
        "batch": shares(batch),
        "live": shares(live),
        "quantiles": {"batch": quantiles(batch), "live": quantiles(live)},
        "psi": round(psi(batch, live), 4),
    }


def export_clusters(
    model: Any, name: str, run_id: str, features: Mapping[str, str], names: Mapping[int, str]
) -> dict[str, Any]:
    """What assigning a K-Means cluster needs: the log flags, the scaler, the centroids (in
    scaled space, in K-Means' order), each centroid's stable id and its name."""
    return {
        "model": name,
        "kind": "kmeans",
        "run_id": run_id,
        "features": dict(features),
        "log1p": [c in (model.log_columns or ()) for c in model.columns],
        "mean": model.scaler.mean_.tolist(),
        "scale": model.scaler.scale_.tolist(),
        "centroids": model.kmeans.cluster_centers_.tolist(),
        "cluster_ids": [int(c) for c in model.cluster_ids],
        "names": {str(c): names[int(c)] for c in model.cluster_ids},
    }
