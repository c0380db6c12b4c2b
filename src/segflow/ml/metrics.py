"""Metrics of a probabilistic classifier: ROC AUC, PR AUC, lift (top decile and cumulative),
calibration table, drift.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.2, 0.8, 0.9])
>>> classification_report(y, p)["roc_auc"]
1.0
>>> round(psi(np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2, 0.3])), 6)
0.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

Array = npt.NDArray[Any]


def lift_curve(y: Array, p: Array, points: int = 10) -> list[dict[str, float]]:
    """Cumulative lift at each ``1/points`` share of profiles, best scores first: the positive
    rate among the top share over the overall rate.

    Tied scores are not ordered by accident of row order: a tie group cut by the share counts
    with its own positive rate for the part inside (the expected figure over every order of
    the ties). So when most profiles share one score, the curve is flat there, as it should.

    >>> y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0]); p = np.array([0.9] + [0.1] * 9)
    >>> [pt["lift"] for pt in lift_curve(y, p, points=2)]
    [1.4444, 1.0]
    """
    n, base = len(y), float(np.mean(y)) if len(y) else 0.0
    if n == 0 or base == 0:
        return []
    values, inverse = np.unique(-np.asarray(p, dtype=np.float64), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(values)).astype(np.float64)
    hits = np.bincount(inverse, weights=np.asarray(y, dtype=np.float64), minlength=len(values))
    ends = np.cumsum(sizes)  # rows up to the end of each tie group, best group first
    cum_hits = np.cumsum(hits)
    out = []
    for k in range(1, points + 1):
        take = n * k / points
        g = int(np.searchsorted(ends, take, side="left"))  # the group the cut falls in
        before = ends[g] - sizes[g]
        positives = (cum_hits[g] - hits[g]) + hits[g] * (take - before) / sizes[g]
        out.append(
            {"share": round(k / points, 4), "lift": round(float(positives / take / base), 4)}
        )
    return out


def top_decile_lift(y: Array, p: Array) -> float:
    """Positive rate among the top 10% scores over the overall positive rate (ties pro rata,
    as :func:`lift_curve`, whose first point it is)."""
    curve = lift_curve(y, p, points=10)
    return curve[0]["lift"] if curve else 0.0


def calibration_table(
    y: Array, p: Array, bins: int = 10, min_count: int = 50, seed: int = 0
) -> list[dict[str, float]]:
    """Per bin of equal count (by score, ties split at random with a fixed seed): count, score
    range, mean predicted probability and observed positive rate.

    Equal-count bins, not equal-width ones: with most scores near one value, fixed-width bins
    put nearly every row in one bin. There are at most ``len(p) // min_count`` bins (at least
    one), so each holds ``min_count`` rows or more.

    >>> t = calibration_table(np.array([0, 1] * 50), np.linspace(0, 1, 100), bins=4, min_count=10)
    >>> [r["count"] for r in t]
    [25, 25, 25, 25]
    """
    n = len(p)
    if n == 0:
        return []
    k = max(1, min(bins, n // max(min_count, 1)))
    tiebreak = np.random.default_rng(seed).permutation(n)
    order = np.lexsort((tiebreak, np.asarray(p)))
    rows = []
    for part in np.array_split(order, k):
        rows.append(
            {
                "bin_low": round(float(p[part].min()), 4),
                "bin_high": round(float(p[part].max()), 4),
                "count": len(part),
                "mean_predicted": round(float(p[part].mean()), 4),
                "observed_rate": round(float(y[part].mean()), 4),
            }
        )
    return rows


def classification_report(y: Array, p: Array) -> dict[str, Any]:
    """ROC AUC, PR AUC, top-decile lift, base rate and calibration table of scores ``p`` for labels ``y``."""
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": round(float(roc_auc_score(y, p)), 4) if both else None,
        "pr_auc": round(float(average_precision_score(y, p)), 4) if both else None,
        "lift_top_decile": round(top_decile_lift(y, p), 4),
        "lift_curve": lift_curve(y, p),
        "base_rate": round(float(np.mean(y)), 4),
        "n": len(y),
        "calibration": calibration_table(y, p),
    }


def psi(previous: Array, current: Array, bins: int = 10) -> float:
    """Population stability index of the score distribution between two runs (scores in [0, 1])."""
    edges = np.linspace(0, 1, bins + 1)
    a = np.histogram(np.clip(previous, 0, 1), edges)[0] / max(len(previous), 1)
    b = np.histogram(np.clip(current, 0, 1), edges)[0] / max(len(current), 1)
    a, b = np.maximum(a, 1e-6), np.maximum(b, 1e-6)
    return float(np.sum((b - a) * np.log(b / a)))
