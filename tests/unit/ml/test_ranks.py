"""Rank shares: what ``score M in top P%`` compares (segflow.ml.ranks)."""

from __future__ import annotations

import numpy as np

from segflow.ml.ranks import rank_shares, with_ranks
from segflow.rules.ast import split_scores


def test_tied_scores_are_all_in_or_all_out_and_a_top_segment_is_never_larger() -> None:
    # as the demo's bundle model: 78% of the profiles share one low score, q50 = q75 = q90
    scores = np.array([0.003] * 78 + [0.01] * 12 + [0.2] * 10)
    top, bottom = rank_shares(scores)
    assert (top <= 0.10).sum() == 10  # exactly the ten highest
    assert (top <= 0.15).sum() == 10  # the next twelve are tied: all out, not five of them
    assert (top <= 0.25).sum() == 22
    assert (top <= 0.90).sum() == 22  # the tie of 78 fits in no top below 100%
    assert (top <= 1.0).sum() == 100
    assert (bottom <= 0.5).sum() == 0 and (bottom <= 0.78).sum() == 78


def test_one_score_for_everybody_fills_no_top_but_the_whole() -> None:
    top, bottom = rank_shares(np.full(5, 0.4))
    assert top.tolist() == bottom.tolist() == [1.0] * 5
    assert [len(v) for v in rank_shares(np.zeros(0))] == [0, 0]


def test_a_run_stores_the_score_and_both_shares_and_a_profile_reads_them_apart() -> None:
    stored = {key: float(values[0]) for key, values in with_ranks("m", np.array([0.5, 0.9]))}
    assert stored == {"m": 0.5, "m:top": 1.0, "m:bottom": 0.5}
    assert split_scores(stored) == ({"m": 0.5}, {"m": {"top": 1.0, "bottom": 0.5}})
