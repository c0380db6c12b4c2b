"""Propensity models: point-in-time training data, gradient-boosted trees, calibration, baseline, reasons.

Training data is built at several past cutoffs ``c``: features from events at or before ``c``
(:func:`segflow.ml.features.features_at`), labels from events in ``(c, c + H]``
(:func:`segflow.ml.targets.labels_sql`). The latest cutoff is the validation period; the
training cutoffs are spaced so that every training label window ends at or before it, so no
training row has seen anything that happened after the validation cutoff.

The learner is scikit-learn's ``HistGradientBoostingClassifier`` (LightGBM is not a
dependency; on these features the two are within noise, see docs/ml.md), calibrated with
isotonic regression on a held-out fifth of the training rows. The baseline is a logistic
regression on log recency and log 30-day frequency, measured in the same run.

>>> cutoffs = training_cutoffs(now_ms=100 * DAY_MS, within_ms=7 * DAY_MS, n_cutoffs=3)
>>> [c // DAY_MS for c in cutoffs]
[79, 86, 93]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from segflow.clock import DAY_MS
from segflow.ml.exceptions import FitError, MLInputError
from segflow.ml.features import FEATURE_COLUMNS, FeatureMatrix, features_at
from segflow.ml.ltv import FloatArray
from segflow.ml.metrics import classification_report
from segflow.ml.targets import Target, label_params, labels_sql

IntArray = npt.NDArray[np.int64]
BASELINE_COLUMNS = ("recency", "frequency_30d")
BACKTEST_SAMPLE = 50_000
BASELINE_SAMPLE = 200_000  # two features: more rows change nothing but the time
STACKED_ROWS = 4_096  # up to this many rows, contributions take one prediction call


def calibration_split(
    y: np.ndarray, rows: np.ndarray, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified fifth of ``rows`` for calibration, the rest for fitting: both parts hold
    both labels (calibration's cross-validation needs each class in every fold).

    >>> y = np.array([0] * 20 + [1] * 5)
    >>> cal, fit = calibration_split(y, np.arange(25))
    >>> sorted(set(y[cal].tolist())), sorted(set(y[fit].tolist())), len(cal)
    ([0, 1], [0, 1], 6)
    """
    rng = np.random.default_rng(random_state)
    cal_parts, fit_parts = [], []
    for label in (0, 1):
        of_label = rng.permutation(rows[y[rows] == label])
        if len(of_label) < 4:  # 2 to calibrate (two folds) and 2 to fit, at the least
            raise FitError(
                "propensity",
                f"too few {'positive' if label else 'negative'} labels to train and calibrate"
                f" ({len(of_label)}; at least 4 are needed)",
            )
        n_cal = max(len(of_label) // 5, 2)
        cal_parts.append(of_label[:n_cal])
        fit_parts.append(of_label[n_cal:])
    return np.concatenate(cal_parts), np.concatenate(fit_parts)


def training_cutoffs(
    now_ms: int, within_ms: int, n_cutoffs: int = 4, step_ms: int | None = None
) -> list[int]:
    """Cutoffs, oldest first; the last is the validation cutoff ``now - H``, the others are spaced
    by ``step_ms`` (default ``max(H, 7 days)``) so each training label window ends before it."""
    step = max(step_ms or max(within_ms, 7 * DAY_MS), within_ms)
    validation = now_ms - within_ms
    return [validation - i * step for i in range(n_cutoffs - 1, -1, -1)]


@dataclass(frozen=True)
class TrainingSet:
    profile_ids: list[str]
    cutoff_ms: IntArray
    columns: tuple[str, ...]
    X: FloatArray
    y: IntArray


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    cutoffs: list[int],
    *,
    events_table: str = "profile_events",
    columns: tuple[str, ...] = FEATURE_COLUMNS,
    feature_traits: Mapping[str, str] | None = None,
) -> TrainingSet:
    """Features at each cutoff joined with the label from the window after it; with
    ``feature_traits`` the features are those computed traits at each cutoff
    (:func:`segflow.ml.live.traits_at`)."""
    ids: list[str] = []
    cuts: list[IntArray] = []
    xs: list[FloatArray] = []
    ys: list[IntArray] = []
    if feature_traits:
        columns = tuple(feature_traits)
    for cutoff in cutoffs:
        if feature_traits:
            from segflow.ml.live import traits_at

            m = traits_at(con, feature_traits, cutoff)
        else:
            m = features_at(con, cutoff, events_table=events_table, columns=columns)
        if not m.profile_ids:
            continue
        labels = _labels(con, target, m.profile_ids, cutoff, events_table)
        ids.extend(m.profile_ids)
        cuts.append(np.full(len(m.profile_ids), cutoff, dtype=np.int64))
        xs.append(m.values)
        ys.append(labels)
    if not xs:
        raise FitError("propensity", "no profile has events before the first cutoff")
    return TrainingSet(ids, np.concatenate(cuts), columns, np.vstack(xs), np.concatenate(ys))


def _labels(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    profile_ids: list[str],
    cutoff: int,
    events_table: str,
) -> IntArray:
    cutoffs = pa.table(
        {"profile_id": profile_ids, "cutoff_ms": pa.array([cutoff] * len(profile_ids), pa.int64())}
    )
    con.register("ml_cutoffs_arrow", cutoffs)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE ml_cutoffs AS SELECT *, row_number() OVER () AS ord FROM ml_cutoffs_arrow"
        )
        sql = f"SELECT l.label FROM ({labels_sql(target, events_table)}) l JOIN ml_cutoffs c USING (profile_id, cutoff_ms) ORDER BY c.ord"
        rows = con.execute(sql, label_params(target)).fetchnumpy()["label"]
    finally:
        con.unregister("ml_cutoffs_arrow")
    return np.asarray(rows, dtype=np.int64)


@dataclass
class PropensityModel:
    """A trained, calibrated model with its baseline and the reference point for reasons."""

    target: Target
    columns: tuple[str, ...]
    booster: HistGradientBoostingClassifier
    calibrated: CalibratedClassifierCV
    baseline: Any
    reference: FloatArray
    report: dict[str, Any] = field(default_factory=dict)

    def score(self, matrix: FeatureMatrix) -> FloatArray:
        """Calibrated probability of the target for every profile."""
        out: FloatArray = self.calibrated.predict_proba(matrix.values)[:, 1]
        return out

    def contributions(self, matrix: FeatureMatrix, top: int = 3) -> tuple[IntArray, FloatArray]:
        """Top contributing features per profile as arrays ``(feature index, log-odds change)``,
        shape ``(n, top)``: the change when the feature is set to the training median
        (positive raises the score). One extra prediction pass per feature: the scoring job
        leaves this to :mod:`segflow.ml.reasons`, which runs it for a profile when it is read."""
        X = matrix.values
        n, f = X.shape
        if n * (f + 1) <= STACKED_ROWS:  # a few profiles: every variant in one prediction call
            stacked = np.repeat(X[:, None, :], f + 1, axis=1)
            stacked[:, np.arange(1, f + 1), np.arange(f)] = self.reference
            raw = self.booster.decision_function(stacked.reshape(-1, f)).reshape(n, f + 1)
            contrib = raw[:, :1] - raw[:, 1:]
        else:
            contrib = np.empty_like(X)
            swapped = np.empty_like(X)
            base = self.booster.decision_function(X)
            for j in range(f):
                np.copyto(swapped, X)
                swapped[:, j] = self.reference[j]
                contrib[:, j] = base - self.booster.decision_function(swapped)
        order = np.argsort(-np.abs(contrib), axis=1)[:, :top].astype(np.int64)
        values: FloatArray = np.round(np.take_along_axis(contrib, order, axis=1), 4)
        return order, values

    def reasons(self, matrix: FeatureMatrix, top: int = 3) -> list[list[tuple[str, float]]]:
        """:meth:`contributions` with feature names, one list per profile."""
        order, values = self.contributions(matrix, top)
        return [
            [(self.columns[j], float(v)) for j, v in zip(row, vals, strict=True)]
            for row, vals in zip(order.tolist(), values.tolist(), strict=True)
        ]


def baseline_columns(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The baseline's two features: log recency and log 30-day frequency, or, for a model
    whose features are computed traits (``segflow.ml.live``), its first two.

    >>> baseline_columns(("events_1d", "events_7d", "orders_90d"))
    ('events_1d', 'events_7d')
    """
    if all(c in columns for c in BASELINE_COLUMNS):
        return BASELINE_COLUMNS
    return columns[:2]


def _baseline_fit(ts: TrainingSet, rows: IntArray) -> Any:
    idx = [ts.columns.index(c) for c in baseline_columns(ts.columns)]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(np.log1p(np.maximum(ts.X[rows][:, idx], 0)), ts.y[rows])


def _baseline_score(model: Any, ts: TrainingSet, rows: IntArray) -> FloatArray:
    idx = [ts.columns.index(c) for c in baseline_columns(ts.columns)]
    out: FloatArray = model.predict_proba(np.log1p(np.maximum(ts.X[rows][:, idx], 0)))[:, 1]
    return out


LEARNERS = {
    "boosting": "HistGradientBoostingClassifier + isotonic calibration",
    "logistic": "log1p + StandardScaler + LogisticRegression + isotonic calibration",
}


def _learner(learner: str, ts: TrainingSet, max_iter: int, random_state: int) -> Any:
    """The estimator to fit: gradient-boosted trees, or the logistic regression that
    ``segflow.stream.live`` can score in the processor (every feature ``log1p``-ed)."""
    if learner == "boosting":
        return HistGradientBoostingClassifier(max_iter=max_iter, random_state=random_state)
    if learner == "logistic":
        from segflow.ml.live import LogColumns

        flags = tuple(True for _ in ts.columns)
        return make_pipeline(LogColumns(flags), StandardScaler(), LogisticRegression(max_iter=1000))
    raise MLInputError("learner", f"unknown learner {learner!r}; use one of {sorted(LEARNERS)}")


def train(
    ts: TrainingSet,
    target: Target,
    *,
    random_state: int = 0,
    max_iter: int = 200,
    learner: str = "boosting",
) -> PropensityModel:
    """Fit on every cutoff but the last, calibrate on a held-out fifth, validate on the last."""
    validation_cutoff = int(ts.cutoff_ms.max())
    train_rows = np.flatnonzero(ts.cutoff_ms < validation_cutoff)
    valid_rows = np.flatnonzero(ts.cutoff_ms == validation_cutoff)
    if len(train_rows) == 0 or len(np.unique(ts.y[train_rows])) < 2:
        raise FitError("propensity", "the training cutoffs need both positive and negative labels")
    cal_rows, fit_rows = calibration_split(ts.y, train_rows, random_state)
    rng = np.random.default_rng(random_state)
    booster = _learner(learner, ts, max_iter, random_state)
    booster.fit(ts.X[fit_rows], ts.y[fit_rows])
    method = "isotonic" if len(cal_rows) >= 1000 else "sigmoid"
    calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method=method).fit(
        ts.X[cal_rows], ts.y[cal_rows]
    )
    baseline_rows = (
        train_rows
        if len(train_rows) <= BASELINE_SAMPLE
        else np.sort(rng.choice(train_rows, BASELINE_SAMPLE, replace=False))
    )
    baseline = _baseline_fit(ts, baseline_rows)
    reference = np.median(ts.X[train_rows], axis=0)
    model = PropensityModel(target, ts.columns, booster, calibrated, baseline, reference)
    model.report = _report(model, ts, train_rows, valid_rows)
    model.report["learner"] = LEARNERS[learner]
    return model


def _report(
    model: PropensityModel, ts: TrainingSet, train_rows: IntArray, valid_rows: IntArray
) -> dict[str, Any]:
    y_valid = ts.y[valid_rows]
    p_model = model.calibrated.predict_proba(ts.X[valid_rows])[:, 1]
    p_base = _baseline_score(model.baseline, ts, valid_rows)
    backtest = []
    rng = np.random.default_rng(0)
    for cutoff in np.unique(ts.cutoff_ms):
        rows = np.flatnonzero(ts.cutoff_ms == cutoff)
        if cutoff == ts.cutoff_ms.max():
            p = p_model
        else:  # in-sample figures: a sample is enough
            if len(rows) > BACKTEST_SAMPLE:
                rows = np.sort(rng.choice(rows, BACKTEST_SAMPLE, replace=False))
            p = model.calibrated.predict_proba(ts.X[rows])[:, 1]
        rep = classification_report(ts.y[rows], p)
        backtest.append(
            {
                "cutoff_ms": int(cutoff),
                "in_sample": bool(cutoff != ts.cutoff_ms.max()),
                "n": len(rows),
                "mean_score": round(float(p.mean()), 4),
                "observed_rate": rep["base_rate"],
                "roc_auc": rep["roc_auc"],
            }
        )
    return {
        "validation": classification_report(y_valid, p_model),
        "baseline": {
            k: v for k, v in classification_report(y_valid, p_base).items() if k != "calibration"
        },
        "backtest": backtest,
        "train_rows": len(train_rows),
        "validation_rows": len(valid_rows),
        "train_cutoffs_ms": sorted({int(c) for c in ts.cutoff_ms[train_rows]}),
        "validation_cutoff_ms": int(ts.cutoff_ms.max()),
        "learner": "HistGradientBoostingClassifier + isotonic calibration",
    }
