"""Fit BG/NBD + Gamma-Gamma to a transaction summary; holdout check; per-customer LTV and P(alive).

>>> import numpy as np, datetime as dt
>>> from segflow.ml.transactions import RfmSummary
>>> s = RfmSummary(["a", "b", "c", "d"], np.array([0., 2, 4, 1]), np.array([0., 5, 9, 2]),
...                np.array([10., 10, 10, 10]), np.array([0., 12, 30, 8]), np.zeros(4), 0.0,
...                dt.date(2024, 1, 1), "weeks")
>>> sorted(fit_summary(s).to_dict())
['bgnbd', 'customers', 'gamma_gamma', 'holdout', 'log_likelihood', 'time_unit']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segflow.ml.exceptions import MLInputError
from segflow.ml.ltv import (
    BgNbdFit,
    FloatArray,
    GammaGammaFit,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    lifetime_value,
    p_alive,
)
from segflow.ml.transactions import TIME_UNITS_DAYS, RfmSummary

BUCKETS = 7  # holdout comparison by calibration frequency 0..6 and 7+ (as in FHL 2005, fig. 4)


@dataclass(frozen=True)
class LtvFit:
    bgnbd: BgNbdFit
    gamma_gamma: GammaGammaFit | None
    holdout: dict[str, Any] | None
    time_unit: str
    customers: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON the CLI prints and the registry stores."""
        b, g = self.bgnbd, self.gamma_gamma
        return {
            "bgnbd": {k: round(v, 6) for k, v in vars(b.params).items()},
            "gamma_gamma": {k: round(v, 6) for k, v in vars(g.params).items()} if g else None,
            "log_likelihood": {
                "bgnbd": round(b.log_likelihood, 4),
                "gamma_gamma": round(g.log_likelihood, 4) if g else None,
            },
            "customers": {"calibration": self.customers, "repeat": g.n_customers if g else 0},
            "time_unit": self.time_unit,
            "holdout": self.holdout,
        }


def holdout_comparison(fit: BgNbdFit, summary: RfmSummary) -> dict[str, Any]:
    """Predicted vs actual repeat purchases in the holdout, in total and by calibration frequency."""
    t = summary.holdout_length
    predicted = expected_purchases(fit.params, t, summary.x, summary.t_x, summary.T)
    buckets = np.minimum(summary.x, BUCKETS).astype(int)
    by_frequency = []
    for b in range(BUCKETS + 1):
        mask = buckets == b
        if mask.any():
            by_frequency.append(
                {
                    "x": f"{b}+" if b == BUCKETS else str(b),
                    "customers": int(mask.sum()),
                    "actual_mean": round(float(summary.x_holdout[mask].mean()), 4),
                    "predicted_mean": round(float(predicted[mask].mean()), 4),
                }
            )
    actual_total, predicted_total = float(summary.x_holdout.sum()), float(predicted.sum())
    return {
        "length": round(t, 4),
        "actual_repeat_purchases": int(actual_total),
        "predicted_repeat_purchases": round(predicted_total, 2),
        "error_pct": round(100 * (predicted_total - actual_total) / actual_total, 2)
        if actual_total
        else None,
        "by_calibration_frequency": by_frequency,
    }


def fit_summary(summary: RfmSummary) -> LtvFit:
    """Fit both models; compare with the holdout when the data extends past the calibration end."""
    bg = fit_bgnbd(summary.x, summary.t_x, summary.T)
    try:
        gg: GammaGammaFit | None = fit_gamma_gamma(summary.x, summary.m_x)
    except MLInputError:
        gg = None
    holdout = holdout_comparison(bg, summary) if summary.holdout_length > 0 else None
    return LtvFit(bg, gg, holdout, summary.time_unit, len(summary.customers))


def score_summary(
    fit: LtvFit, summary: RfmSummary, *, horizon_days: int = 365, discount_rate: float = 0.01
) -> dict[str, FloatArray]:
    """Per customer: ``p_alive``, ``expected_purchases`` and ``ltv`` over ``horizon_days`` (monthly discounting)."""
    horizon = horizon_days / TIME_UNITS_DAYS[summary.time_unit]
    alive = p_alive(fit.bgnbd.params, summary.x, summary.t_x, summary.T)
    purchases = expected_purchases(fit.bgnbd.params, horizon, summary.x, summary.t_x, summary.T)
    if fit.gamma_gamma is None:
        ltv = np.zeros_like(purchases)
    else:
        months = max(1, round(horizon_days / 30.4375))
        ltv = lifetime_value(fit.bgnbd.params, fit.gamma_gamma.params, summary.x, summary.t_x, summary.T, summary.m_x,
                             horizon=horizon, periods=months, discount_rate=discount_rate)  # fmt: skip
    return {"p_alive": alive, "expected_purchases": purchases, "ltv": ltv}
