"""Segment discovery: K-Means on behavioural features, automatic k, stable identities, names and cards.

Pipeline: ``log1p`` on heavy-tailed columns -> standard scaling -> K-Means. When ``k`` is not
fixed it is chosen by the mean silhouette over k = 2..12, each candidate fitted on a sample
(``sample_size`` profiles, default 20,000) and scored on a sub-sample (5,000); the final model is
fitted on every profile starting from the sample's centroids. A retrained model is matched
to the previous one (Hungarian assignment on centroid distance, in the new model's scaled
space) so cluster ids keep their meaning; clusters that find no partner get fresh ids.

>>> import numpy as np
>>> from segflow.ml.features import FeatureMatrix
>>> rng = np.random.default_rng(0)
>>> values = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(50, 1, (50, 2))]).clip(0)
>>> m = FeatureMatrix([str(i) for i in range(100)], ("frequency_30d", "monetary_value_90d"), values)
>>> model = fit_clusters(m, ClusterConfig(random_state=0))
>>> model.k
2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from segflow.ml.exceptions import MLInputError
from segflow.ml.features import HEAVY_TAILED, FeatureMatrix, behavioural_transform
from segflow.ml.ltv import FloatArray

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClusterConfig:
    """How to cluster: ``k`` fixed, or chosen over ``k_range`` by silhouette on a sample."""

    k: int | None = None
    k_range: tuple[int, int] = (2, 12)
    sample_size: int = 20_000
    silhouette_sample: int = 5_000
    random_state: int = 0


@dataclass
class ClusterModel:
    """A fitted clustering: what's needed to assign new profiles and to match the next retrain."""

    columns: tuple[str, ...]
    scaler: StandardScaler
    kmeans: KMeans
    cluster_ids: list[int]  # cluster_ids[i] is the stable id of K-Means centre i
    centroids_original: FloatArray  # per stable-id order of cluster_ids, in original units
    silhouette_by_k: dict[int, float] = field(default_factory=dict)
    # the columns log1p-transformed before scaling; None: the heavy-tailed feature names
    log_columns: frozenset[str] | None = None

    @property
    def k(self) -> int:
        return len(self.cluster_ids)

    def scaled(self, matrix: FeatureMatrix) -> FloatArray:
        if matrix.columns != self.columns:
            raise MLInputError(
                "features", f"model expects columns {self.columns}, got {matrix.columns}"
            )
        logged = getattr(self, "log_columns", None)  # artifacts pickled before it existed
        out: FloatArray = self.scaler.transform(behavioural_transform(matrix, logged))
        return out

    def assign(self, matrix: FeatureMatrix) -> IntArray:
        """Stable cluster id of every profile in ``matrix``."""
        raw = self.kmeans.predict(self.scaled(matrix))
        lookup = np.asarray(self.cluster_ids, dtype=np.int64)
        out: IntArray = lookup[raw]
        return out


def _sample(n: int, size: int, seed: int) -> IntArray:
    rng = np.random.default_rng(seed)
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def choose_k(
    scaled: FloatArray, config: ClusterConfig
) -> tuple[int, dict[int, float], dict[int, FloatArray]]:
    """The k with the best silhouette on a sample, the scores, and each k's sample centroids."""
    rows = _sample(len(scaled), config.sample_size, config.random_state)
    sample = scaled[rows]
    low, high = config.k_range
    high = min(high, len(np.unique(sample, axis=0)) - 1)
    if high < low:
        raise MLInputError(
            "k", f"too few distinct profiles ({len(sample)}) to choose k in {config.k_range}"
        )
    scored = _sample(len(sample), config.silhouette_sample, config.random_state + 1)
    scores: dict[int, float] = {}
    centres: dict[int, FloatArray] = {}
    for k in range(low, high + 1):
        km = KMeans(n_clusters=k, n_init=3, random_state=config.random_state).fit(sample)
        labels = km.labels_[scored]
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(sample[scored], labels))
        centres[k] = km.cluster_centers_
    if not scores:
        raise MLInputError("k", "no k produced two or more non-empty clusters")
    best = max(scores, key=lambda k: scores[k])
    return best, scores, centres


def match_clusters(
    new_centroids: FloatArray, previous_centroids: FloatArray, previous_ids: list[int]
) -> list[int]:
    """Stable ids for new centroids: Hungarian matching to the previous ones, fresh ids for the rest.

    >>> match_clusters(np.array([[10.0], [0.0], [5.0]]), np.array([[0.0], [10.0]]), [7, 3])
    [3, 7, 8]
    """
    ids = [-1] * len(new_centroids)
    if len(previous_centroids):
        cost = np.linalg.norm(new_centroids[:, None, :] - previous_centroids[None, :, :], axis=2)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            ids[int(r)] = previous_ids[int(c)]
    next_id = max(previous_ids, default=-1) + 1
    for i, value in enumerate(ids):
        if value == -1:
            ids[i] = next_id
            next_id += 1
    return ids


def fit_clusters(
    matrix: FeatureMatrix,
    config: ClusterConfig = ClusterConfig(),
    previous: ClusterModel | None = None,
    log_columns: frozenset[str] | None = None,
) -> ClusterModel:
    """Fit K-Means (choosing k unless fixed) and give clusters ids stable against ``previous``;
    ``log_columns``: the columns to ``log1p`` (None: the heavy-tailed feature names)."""
    if len(matrix.profile_ids) < 3:
        raise MLInputError("features", "need at least three profiles to cluster")
    transformed = behavioural_transform(matrix, log_columns)
    scaler = StandardScaler().fit(transformed)
    scaled = scaler.transform(transformed)
    silhouettes: dict[int, float] = {}
    if config.k is None:
        k, silhouettes, centres = choose_k(scaled, config)
        kmeans = KMeans(
            n_clusters=k, init=centres[k], n_init=1, random_state=config.random_state
        ).fit(scaled)
    else:
        kmeans = KMeans(n_clusters=config.k, n_init=3, random_state=config.random_state).fit(scaled)
    logged = HEAVY_TAILED if log_columns is None else log_columns
    centroids_original = _to_original(scaler, kmeans.cluster_centers_, matrix.columns, logged)
    ids = list(range(kmeans.n_clusters))
    if previous is not None and previous.columns == matrix.columns:
        previous_logged = getattr(previous, "log_columns", None)
        if (HEAVY_TAILED if previous_logged is None else previous_logged) == logged:
            prev_scaled = scaler.transform(
                _to_transformed(previous.centroids_original, matrix.columns, logged)
            )
            ids = match_clusters(kmeans.cluster_centers_, prev_scaled, previous.cluster_ids)
    return ClusterModel(
        matrix.columns, scaler, kmeans, ids, centroids_original, silhouettes, log_columns
    )


def _to_original(
    scaler: StandardScaler, centres: FloatArray, columns: tuple[str, ...], logged: frozenset[str]
) -> FloatArray:
    out: FloatArray = scaler.inverse_transform(centres)
    for j, name in enumerate(columns):
        if name in logged:
            out[:, j] = np.expm1(out[:, j])
    return out


def _to_transformed(
    original: FloatArray, columns: tuple[str, ...], logged: frozenset[str]
) -> FloatArray:
    return behavioural_transform(FeatureMatrix([], columns, original), logged)


def changed_share(previous: Mapping[str, int], current_ids: list[str], current: IntArray) -> float:
    """Share of profiles present in both runs whose cluster id changed.

    >>> changed_share({"a": 1, "b": 2}, ["a", "b", "c"], np.array([1, 3, 0]))
    0.5
    """
    both = [
        (previous[p], int(c)) for p, c in zip(current_ids, current, strict=True) if p in previous
    ]
    if not both:
        return 0.0
    return sum(1 for old, new in both if old != new) / len(both)
