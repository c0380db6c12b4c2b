from __future__ import annotations

import numpy as np
import pytest

from segflow.clock import DAY_MS, HOUR_MS
from segflow.ml.exceptions import MLInputError
from segflow.ml.metrics import (
    calibration_table,
    classification_report,
    lift_curve,
    psi,
    top_decile_lift,
)
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


def _tied_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2,564 validation rows where 2,559 share one score (as bundle_72h's isotonic output did),
    and the rows happen to be ordered with the positives first among the ties."""
    rng = np.random.default_rng(seed)
    p = np.concatenate([np.full(2559, 0.003), rng.uniform(0.2, 0.6, 5)])
    y = np.zeros(2564, dtype=int)
    y[:40] = 1  # positives among the tied rows, first in row order
    y[-2:] = 1
    return y, p


def test_top_decile_lift_does_not_depend_on_the_order_of_tied_scores() -> None:
    y, p = _tied_scores()
    flipped = np.concatenate([y[:2559][::-1], y[2559:]])
    assert top_decile_lift(y, p) == top_decile_lift(flipped, p)
    # the top 10%: the 5 distinct scores (2 positives) and 251.4 tied rows at the tie's rate
    n_top, tie_rate = 256.4, 40 / 2559
    expected = (2 + (n_top - 5) * tie_rate) / n_top / (42 / 2564)
    assert top_decile_lift(y, p) == pytest.approx(expected, abs=1e-4)


def test_the_lift_curve_starts_at_the_top_decile_lift_and_ends_at_one() -> None:
    y, p = _tied_scores()
    curve = lift_curve(y, p)
    assert [pt["share"] for pt in curve] == pytest.approx([k / 10 for k in range(1, 11)])
    assert curve[0]["lift"] == classification_report(y, p)["lift_top_decile"]
    assert curve[-1]["lift"] == pytest.approx(1.0)
    # past the distinct scores the curve is flat: the tie holds no better or worse rows
    assert max(pt["lift"] for pt in curve[1:]) - min(pt["lift"] for pt in curve[1:]) < 0.3


def test_calibration_bins_are_equal_count_even_when_scores_tie() -> None:
    y, p = _tied_scores()
    table = calibration_table(y, p)
    counts = [r["count"] for r in table]
    assert len(table) == 10 and sum(counts) == 2564 and max(counts) - min(counts) <= 1
    few = calibration_table(y[:120], p[:120], min_count=50)
    assert [r["count"] for r in few] == [60, 60]  # no bin smaller than min_count
    assert calibration_table(y[:10], p[:10], min_count=50)[0]["count"] == 10
