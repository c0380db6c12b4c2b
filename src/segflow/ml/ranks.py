"""Where each profile's score stands in its scoring run: the percentile conditions' input.

A profile's *top share* is the share of the run's scored profiles whose score is at least its
own (itself included); ``score m in top P%`` holds when it is at most ``P/100``. The *bottom
share* (scores at most its own) is the same from below, for ``in bottom P%``. Tied profiles
are all in or all out, and a segment never holds more than P% of the scored profiles: it holds
fewer when a tie straddles the cut (with one score for everybody, ``in top 10%`` is empty).

A scoring run stores both shares beside the score, under ``m:top`` and ``m:bottom``
(:func:`segflow.rules.ast.rank_key`), in ``profile_scores`` and in profile state, so the SQL
compiler and the incremental evaluator compare the same stored number.

>>> import numpy as np
>>> top, bottom = rank_shares(np.array([0.9, 0.5, 0.5, 0.1]))
>>> top.tolist(), bottom.tolist()
([0.25, 0.75, 0.75, 1.0], [1.0, 0.75, 0.75, 0.25])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from segflow.rules.ast import rank_key

FloatArray = npt.NDArray[np.float64]


def rank_shares(scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per score: the share of ``scores`` at least as high (its top share) and the share at
    most as high (its bottom share), the score itself included."""
    n = len(scores)
    if n == 0:
        empty: FloatArray = np.zeros(0)
        return empty, empty
    # searching the sorted scores in sorted order is 4x faster than in row order at 1M
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    top: FloatArray = np.empty(n)
    bottom: FloatArray = np.empty(n)
    top[order] = (n - np.searchsorted(ordered, ordered, side="left")) / n
    bottom[order] = np.searchsorted(ordered, ordered, side="right") / n
    return top, bottom


def with_ranks(model: str, scores: FloatArray) -> Iterator[tuple[str, FloatArray]]:
    """``(key, values)`` for the score and both shares: what a scoring run stores.

    >>> [k for k, _ in with_ranks("churn", np.array([0.2]))]
    ['churn', 'churn:top', 'churn:bottom']
    """
    top, bottom = rank_shares(scores)
    yield model, scores
    yield rank_key(model, "top"), top
    yield rank_key(model, "bottom"), bottom
