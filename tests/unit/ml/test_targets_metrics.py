from __future__ import annotations

import numpy as np
import pytest

from segflow.clock import DAY_MS, HOUR_MS
from segflow.ml.exceptions import MLInputError
from segflow.ml.metrics import calibration_table, classification_report, psi, top_decile_lift
from segflow.ml.propensity import training_cutoffs
from segflow.ml.targets import parse_target


def test_targets_parse() -> None:
    t = parse_target('performs  "Order Completed" within 7 days')
    assert (t.kind, t.event, t.within_ms) == ("performs", "Order Completed", 7 * DAY_MS)
    b = parse_target('"Order Completed" in 3+ distinct category within 72 hours')
    assert (b.kind, b.min_distinct, b.property, b.within_ms) == (
        "distinct",
        3,
        "category",
        72 * HOUR_MS,
    )
    assert parse_target("No activity within 30 days").kind == "inactive"
    with pytest.raises(MLInputError):
        parse_target("buys stuff soon")


def test_training_cutoffs_leave_no_label_window_past_validation() -> None:
    cutoffs = training_cutoffs(now_ms=200 * DAY_MS, within_ms=30 * DAY_MS, n_cutoffs=4)
    validation = cutoffs[-1]
    assert validation + 30 * DAY_MS == 200 * DAY_MS
    assert all(c + 30 * DAY_MS <= validation for c in cutoffs[:-1])


def test_metrics() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    rep = classification_report(y, p)
    assert rep["roc_auc"] == pytest.approx(5 / 6, abs=0.02)  # E[AUC] for y ~ Bernoulli(U)
    assert rep["lift_top_decile"] > 1.5
    table = calibration_table(y, p)
    assert sum(r["count"] for r in table) == 5000
    assert all(abs(r["mean_predicted"] - r["observed_rate"]) < 0.08 for r in table)
    assert top_decile_lift(np.zeros(10), p[:10]) == 0.0
    assert psi(p, p) == pytest.approx(0.0)
    assert psi(p, p**3) > 0.1
