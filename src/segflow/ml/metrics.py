"""Metrics of a probabilistic classifier: ROC AUC, PR AUC, top-decile lift, calibration table, drift.

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


def top_decile_lift(y: Array, p: Array) -> float:
    """Positive rate among the top 10% scores over the overall positive rate."""
    base = float(np.mean(y))
    if base == 0:
        return 0.0
    n = max(1, len(p) // 10)
    top = np.argsort(-p, kind="stable")[:n]
    return float(np.mean(y[top])) / base


def calibration_table(y: Array, p: Array, bins: int = 10) -> list[dict[str, float]]:
    """Per probability bin: count, mean predicted probability, observed positive rate."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {
                    "bin_low": round(float(edges[b]), 2),
                    "bin_high": round(float(edges[b + 1]), 2),
                    "count": int(mask.sum()),
                    "mean_predicted": round(float(p[mask].mean()), 4),
                    "observed_rate": round(float(y[mask].mean()), 4),
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
