"""Cluster names and cards: what sets each cluster apart, in words and in numbers, plus a 2-D map.

A cluster's name comes from its two most distinctive features (the centroid's distance from
the population mean in standard deviations, after the behavioural transform), phrased with
the words below, e.g. "High spend · infrequent". Clusters without a feature beyond 0.5 sd
are "Typical". Users can rename clusters; :func:`name_clusters` keeps their names.

>>> phrase("monetary_value_90d", 1.2, first=True)
'High spend'
>>> phrase("frequency_30d", -0.9, first=False)
'infrequent'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from segflow.ml.clustering import ClusterModel, IntArray
from segflow.ml.features import FeatureMatrix
from segflow.ml.ltv import FloatArray

# feature -> (phrase when high, phrase when low)
WORDS: dict[str, tuple[str, str]] = {
    "recency": ("dormant", "recently active"),
    "frequency_30d": ("frequent", "infrequent"),
    "monetary_value_90d": ("high spend", "low spend"),
    "orders_90d": ("many orders", "never convert"),
    "feature_adoption_rate": ("feature explorers", "narrow usage"),
    "support_tickets_60d": ("support-heavy", "no support needs"),
    "avg_session_duration": ("long sessions", "short sessions"),
    "tenure_days": ("long-standing", "new"),
    "r_score": ("recent", "lapsed"),
    "f_score": ("frequent", "infrequent"),
    "m_score": ("high value", "low value"),
}
DISTINCT_SD = 0.5


@dataclass(frozen=True)
class ClusterCard:
    """What the UI shows for one cluster."""

    cluster: int
    name: str
    size: int
    share: float
    centroid: dict[str, float]  # original units
    distinguishing: list[tuple[str, float]]  # (feature, z-score), most distinctive first


def phrase(feature: str, z: float, *, first: bool) -> str:
    """The words for a feature ``z`` standard deviations from the mean."""
    high, low = WORDS.get(feature, (f"high {feature}", f"low {feature}"))
    word = high if z > 0 else low
    return word[:1].upper() + word[1:] if first else word


def _distinguishing(model: ClusterModel) -> dict[int, list[tuple[str, float]]]:
    out: dict[int, list[tuple[str, float]]] = {}
    for row, cluster in enumerate(model.cluster_ids):
        z = model.kmeans.cluster_centers_[row]
        order = np.argsort(-np.abs(z))
        out[cluster] = [(model.columns[j], round(float(z[j]), 3)) for j in order]
    return out


def generated_name(distinguishing: list[tuple[str, float]]) -> str:
    """A name from the (up to) two features beyond ``DISTINCT_SD``.

    >>> generated_name([("monetary_value_90d", 1.5), ("frequency_30d", -0.8), ("recency", 0.1)])
    'High spend · infrequent'
    """
    parts = [(f, z) for f, z in distinguishing if abs(z) >= DISTINCT_SD][:2]
    if not parts:
        return "Typical"
    return " · ".join(phrase(f, z, first=i == 0) for i, (f, z) in enumerate(parts))


def name_clusters(model: ClusterModel, renamed: Mapping[int, str] | None = None) -> dict[int, str]:
    """A unique name per cluster id: the user's name when renamed, else a generated one."""
    renamed = renamed or {}
    names: dict[int, str] = {}
    taken: set[str] = set(renamed.values())
    for cluster, dist in _distinguishing(model).items():
        if cluster in renamed:
            names[cluster] = renamed[cluster]
            continue
        base = generated_name(dist)
        name, n = base, 2
        while name in taken:
            name, n = f"{base} ({n})", n + 1
        taken.add(name)
        names[cluster] = name
    return names


def cluster_cards(
    model: ClusterModel, assigned: IntArray, names: Mapping[int, str]
) -> list[ClusterCard]:
    """One card per cluster, largest first."""
    total = max(len(assigned), 1)
    ids, counts = np.unique(assigned, return_counts=True)
    sizes = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    dist = _distinguishing(model)
    cards = []
    for row, cluster in enumerate(model.cluster_ids):
        centroid = {
            c: round(float(v), 4)
            for c, v in zip(model.columns, model.centroids_original[row], strict=True)
        }
        size = int(sizes.get(cluster, 0))
        cards.append(
            ClusterCard(
                cluster, names[cluster], size, round(size / total, 4), centroid, dist[cluster][:3]
            )
        )
    return sorted(cards, key=lambda c: -c.size)


def projection(
    model: ClusterModel,
    matrix: FeatureMatrix,
    assigned: IntArray,
    *,
    points: int = 2_000,
    seed: int = 0,
) -> dict[str, list[list[float]]]:
    """A 2-D PCA map of a sample of profiles (``[x, y, cluster]``) and of the centroids."""
    scaled = model.scaled(matrix)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(scaled), size=min(points, len(scaled)), replace=False)
    pca = PCA(n_components=2, random_state=seed).fit(scaled[rows] if len(rows) > 2 else scaled)
    xy: FloatArray = pca.transform(scaled[rows])
    centres: FloatArray = pca.transform(model.kmeans.cluster_centers_)
    return {
        "points": [
            [round(float(x), 4), round(float(y), 4), int(c)]
            for (x, y), c in zip(xy, assigned[rows], strict=True)
        ],
        "centroids": [
            [round(float(x), 4), round(float(y), 4), int(c)]
            for (x, y), c in zip(centres, model.cluster_ids, strict=True)
        ],
    }
