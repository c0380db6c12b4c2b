"""The live exports: the processor's numpy scoring gives the fitted scikit-learn model's values."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from segflow.ml.clustering import ClusterConfig, fit_clusters
from segflow.ml.exceptions import MLInputError
from segflow.ml.features import FeatureMatrix
from segflow.ml.live import check_features, export_clusters, export_propensity, traits_at
from segflow.ml.propensity import TrainingSet, train
from segflow.ml.targets import parse_target
from segflow.stream.live import LiveModel

COLUMNS = ("events_7d", "orders_90d", "revenue_90d")
FEATURES = {c: "count(any event)" for c in COLUMNS}  # the expressions are not read here
TARGET = parse_target('performs "Order Completed" within 7 days')


def training_set(n: int, seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.poisson(6, n), rng.poisson(1, n), rng.gamma(1, 80, n)]).astype(float)
    y = (rng.random(n) < 1 / (1 + np.exp(2 - 0.6 * np.log1p(X[:, 1]) - 0.2 * X[:, 0] / 6))).astype(
        np.int64
    )
    cutoffs = np.repeat(np.array([0, 1, 2, 3], dtype=np.int64), n // 4)
    return TrainingSet([f"p{i}" for i in range(n)], cutoffs, COLUMNS, X, y)


@pytest.mark.parametrize(("rows", "method"), [(8000, "isotonic"), (1200, "sigmoid")])
def test_the_exported_logistic_model_scores_like_the_fitted_one(rows: int, method: str) -> None:
    ts = training_set(rows)
    model = train(ts, TARGET, learner="logistic")
    matrix = FeatureMatrix(ts.profile_ids, COLUMNS, ts.X)
    expected = model.score(matrix)
    export = export_propensity(model, "m", "run", FEATURES, expected)
    assert export["calibration"][0]["method"] == method
    live = LiveModel(export)
    assert np.abs(live.score(ts.X) - expected).max() <= 1e-12
    top, bottom = live.ranks(expected) or (None, None)
    assert top is not None and bottom is not None
    assert top.min() > 0 and top.max() == 1.0 and bottom.max() == 1.0


def test_tree_models_are_not_exported() -> None:
    ts = training_set(1200)
    model = train(ts, TARGET, max_iter=20)
    with pytest.raises(MLInputError) as err:
        export_propensity(model, "m", "run", FEATURES, np.zeros(1))
    assert err.value.field == "learner"


def test_the_exported_cluster_model_assigns_like_the_fitted_one() -> None:
    rng = np.random.default_rng(1)
    X = np.vstack([rng.poisson(lam, (300, 3)) for lam in (1, 8, 40)]).astype(float)
    matrix = FeatureMatrix([str(i) for i in range(len(X))], COLUMNS, X)
    model = fit_clusters(matrix, ClusterConfig(k=3), log_columns=frozenset(COLUMNS))
    names = {c: f"group {c}" for c in model.cluster_ids}
    live = LiveModel(export_clusters(model, "segs", "run", FEATURES, names))
    assert live.assign(X).tolist() == model.assign(matrix).tolist()
    assert live.names == names


def test_features_that_are_not_numbers_are_refused_naming_the_feature() -> None:
    for expr, reason in [
        ("most_frequent(category of any event)", "is not a number"),
        ("trait plan", "is not a number"),
        ("count(any event in last", "x:"),
    ]:
        with pytest.raises(MLInputError) as err:
            check_features({"x": expr})
        assert err.value.field == "feature_traits" and reason in str(err.value)


def test_features_at_a_cutoff_see_only_the_profiles_and_events_up_to_it() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE profile_events AS SELECT * FROM (VALUES"
        " ('a', 'm1', 'track', 'Order Completed', NULL, 10::BIGINT, NULL, '{\"revenue\": 5}'::JSON, '{}'::JSON),"
        " ('a', 'm2', 'track', 'Order Completed', NULL, 50::BIGINT, NULL, '{\"revenue\": 7}'::JSON, '{}'::JSON),"
        " ('b', 'm3', 'track', 'Page Viewed', NULL, 40::BIGINT, NULL, '{}'::JSON, '{}'::JSON))"
        " t(profile_id, message_id, type, event, name, timestamp_ms, user_id, properties, traits)"
    )
    features = {"spent": 'sum(revenue of "Order Completed")', "avg": "avg(revenue of any event)"}
    at_20 = traits_at(con, features, 20)
    assert at_20.profile_ids == ["a"] and at_20.values.tolist() == [[5.0, 5.0]]
    at_60 = traits_at(con, features, 60)
    assert at_60.profile_ids == ["a", "b"]
    assert at_60.values.tolist() == [[12.0, 6.0], [0.0, 0.0]]  # null avg -> 0
