from __future__ import annotations

import numpy as np
import pytest

from segflow.ml.cards import cluster_cards, generated_name, name_clusters, projection
from segflow.ml.clustering import ClusterConfig, changed_share, fit_clusters, match_clusters
from segflow.ml.exceptions import MLInputError
from segflow.ml.features import FeatureMatrix

COLUMNS = ("frequency_30d", "monetary_value_90d", "feature_adoption_rate")
CENTRES = np.array([[30.0, 5.0, 0.9], [2.0, 800.0, 0.1], [1.0, 0.0, 0.05]])


def blobs(n_per: int, seed: int, order: list[int] | None = None) -> FeatureMatrix:
    rng = np.random.default_rng(seed)
    order = order or [0, 1, 2]
    parts = [np.abs(CENTRES[c] * rng.lognormal(0, 0.15, (n_per, 3))) for c in order]
    values = np.vstack(parts)
    ids = [f"p{c}-{i}" for c in order for i in range(n_per)]
    return FeatureMatrix(ids, COLUMNS, values)


def test_k_is_chosen_by_silhouette() -> None:
    model = fit_clusters(blobs(200, 0), ClusterConfig(random_state=0, k_range=(2, 6)))
    assert model.k == 3
    assert max(model.silhouette_by_k, key=lambda k: model.silhouette_by_k[k]) == 3


def test_fixed_k_is_respected() -> None:
    assert fit_clusters(blobs(100, 0), ClusterConfig(k=4)).k == 4


def test_retrain_keeps_cluster_identities() -> None:
    first_data = blobs(200, 0)
    first = fit_clusters(first_data, ClusterConfig(k=3, random_state=0))
    # new data, different row order and different K-Means seed: ids must still mean the same groups
    second_data = blobs(200, 5, order=[2, 0, 1])
    second = fit_clusters(second_data, ClusterConfig(k=3, random_state=7), previous=first)
    before = dict(zip(first_data.profile_ids, first.assign(first_data).tolist(), strict=True))
    after = dict(zip(second_data.profile_ids, second.assign(second_data).tolist(), strict=True))
    for group in ("p0-", "p1-", "p2-"):
        old = {v for k, v in before.items() if k.startswith(group)}
        new = {v for k, v in after.items() if k.startswith(group)}
        assert old == new and len(old) == 1
    assert changed_share(before, second_data.profile_ids, second.assign(second_data)) == 0.0


def test_more_clusters_after_retrain_get_fresh_ids() -> None:
    assert match_clusters(np.array([[0.0], [10.0], [20.0]]), np.array([[0.0], [10.0]]), [4, 9]) == [
        4,
        9,
        10,
    ]


def test_names_describe_what_sets_clusters_apart() -> None:
    data = blobs(200, 0)
    model = fit_clusters(data, ClusterConfig(k=3, random_state=0))
    names = name_clusters(model)
    assigned = model.assign(data)
    spender = int(assigned[200])  # first profile of blob 1 (high spend, infrequent)
    assert names[spender].startswith("High spend")
    assert len(set(names.values())) == 3
    renamed = name_clusters(model, {spender: "Whales"})
    assert renamed[spender] == "Whales"
    cards = cluster_cards(model, assigned, names)
    assert sum(c.size for c in cards) == 600
    card = next(c for c in cards if c.cluster == spender)
    assert card.centroid["monetary_value_90d"] == pytest.approx(800, rel=0.1)
    proj = projection(model, data, assigned, points=100)
    assert len(proj["points"]) == 100 and len(proj["centroids"]) == 3


def test_generated_name_without_distinct_features() -> None:
    assert generated_name([("recency", 0.1)]) == "Typical"


def test_too_few_profiles() -> None:
    with pytest.raises(MLInputError):
        fit_clusters(FeatureMatrix(["a"], COLUMNS, np.ones((1, 3))))
