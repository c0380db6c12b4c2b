"""ML benchmark: clustering (with the choice of k), propensity training, scoring — segflow vs raw library calls.

The baseline is what a competent user would write with scikit-learn directly for the same work
(same transforms, same k search on the same sample sizes, same learner and calibration, the
same logistic-regression baseline and validation metrics, the same writes to DuckDB); the ratio
is segflow's overhead (stable ids, names and cards; its data structures and report) over it.

    python -m benchmarks.ml                         # 100k profiles, 5 rounds (~1-2 min)
    python -m benchmarks.ml --profiles 1000000 --rounds 3   # the issue's 1M-profile targets
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.cluster import KMeans
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score, silhouette_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from segflow.clock import ManualClock
from segflow.ml.cards import cluster_cards, name_clusters
from segflow.ml.clustering import ClusterConfig, fit_clusters
from segflow.ml.features import FEATURE_COLUMNS, HEAVY_TAILED, FeatureMatrix
from segflow.ml.jobs import JobContext, run_job
from segflow.ml.propensity import PropensityModel, TrainingSet, train
from segflow.ml.reasons import score_reasons
from segflow.ml.registry import ModelSpec, Registry
from segflow.ml.targets import parse_target


def generate(n: int, seed: int = 0) -> tuple[FeatureMatrix, np.ndarray, np.ndarray]:
    """Profiles of four behaviours; two cutoffs; a label driven by recency and spend."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 4, n)
    scale = np.array([[3, 25, 200, 3, 0.6, 0.2, 400, 300], [40, 1, 5, 0.1, 0.1, 0.05, 60, 100],
                      [10, 8, 40, 1, 0.3, 2.0, 200, 200], [1, 60, 20, 0.5, 0.9, 0.1, 900, 50]])  # fmt: skip
    values = scale[kind] * rng.lognormal(0, 0.5, (n, len(FEATURE_COLUMNS)))
    logit = 1.5 - 0.08 * values[:, 0] + 0.004 * values[:, 2] + 0.02 * values[:, 1] - 2.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    cutoff = np.where(np.arange(n) < int(n * 0.8), 0, 1).astype(np.int64)
    return FeatureMatrix([f"p{i}" for i in range(n)], FEATURE_COLUMNS, values), y, cutoff


def raw_clusters(values: np.ndarray) -> KMeans:
    x = values.copy()
    for j, c in enumerate(FEATURE_COLUMNS):
        if c in HEAVY_TAILED:
            x[:, j] = np.log1p(x[:, j])
    x = StandardScaler().fit_transform(x)
    rng = np.random.default_rng(0)
    sample = x[np.sort(rng.choice(len(x), 20_000, replace=False))]
    scored = np.sort(np.random.default_rng(1).choice(len(sample), 5_000, replace=False))
    best, best_score, best_centres = 0, -2.0, None
    for k in range(2, 13):
        km = KMeans(n_clusters=k, n_init=3, random_state=0).fit(sample)
        score = silhouette_score(sample[scored], km.labels_[scored])
        if score > best_score:
            best, best_score, best_centres = k, score, km.cluster_centers_
    model = KMeans(n_clusters=best, init=best_centres, n_init=1, random_state=0).fit(x)
    model.predict(x)
    return model


def ours_clusters(matrix: FeatureMatrix) -> None:
    model = fit_clusters(matrix, ClusterConfig(random_state=0))
    assigned = model.assign(matrix)
    cluster_cards(model, assigned, name_clusters(model))


def raw_train(ts: TrainingSet) -> CalibratedClassifierCV:
    """The learner, its calibration, the recency-frequency baseline and the validation metrics."""
    rows, valid = np.flatnonzero(ts.cutoff_ms == 0), np.flatnonzero(ts.cutoff_ms == 1)
    shuffled = np.random.default_rng(0).permutation(rows)
    n_cal = len(shuffled) // 5
    hgb = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(
        ts.X[shuffled[n_cal:]], ts.y[shuffled[n_cal:]]
    )
    model = CalibratedClassifierCV(FrozenEstimator(hgb), method="isotonic").fit(
        ts.X[shuffled[:n_cal]], ts.y[shuffled[:n_cal]]
    )
    rf = np.log1p(np.maximum(ts.X[:, :2], 0))  # recency, frequency_30d
    few = np.sort(np.random.default_rng(1).choice(rows, min(len(rows), 200_000), replace=False))
    base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(rf[few], ts.y[few])
    for p in (model.predict_proba(ts.X[valid])[:, 1], base.predict_proba(rf[valid])[:, 1]):
        y = ts.y[valid]
        roc_auc_score(y, p), average_precision_score(y, p), calibration_curve(y, p, n_bins=10)
        top = np.argsort(-p)[: len(p) // 10]
        float(y[top].mean() / y.mean())
    return model


def raw_score_and_store(model: CalibratedClassifierCV, path: str) -> None:
    """Read the features table, score everyone and replace the scores, as a user would."""
    con = duckdb.connect(path)
    cols = con.execute("SELECT * FROM bench_features ORDER BY profile_id").fetchnumpy()
    X = np.column_stack([cols[c] for c in FEATURE_COLUMNS])
    scores = model.predict_proba(X)[:, 1]
    con.register("scored", pa.table({"profile_id": cols["profile_id"], "score": scores}))
    con.execute("CREATE OR REPLACE TABLE raw_scores AS SELECT * FROM scored")
    con.close()


def ours_score_and_store(matrix: FeatureMatrix, path: str) -> None:
    """segflow's scoring job on a warehouse whose features are ``matrix`` (scores, inputs, drift)."""
    con = duckdb.connect(path)
    try:
        ctx = JobContext(con=con, clock=ManualClock(10**12), features_relation="bench_features")
        run_job(ctx, "bench", "score")
    finally:
        con.close()


def prepare_scoring(model: PropensityModel, matrix: FeatureMatrix, path: str) -> None:
    con = duckdb.connect(path)
    features = {"profile_id": matrix.profile_ids, **{c: matrix.column(c) for c in matrix.columns}}
    con.register("features", pa.table(features))
    con.execute("CREATE OR REPLACE TABLE bench_features AS SELECT * FROM features")
    registry = Registry(con)
    registry.put_model(
        ModelSpec(name="bench", kind="propensity", target=model.target.text), now_ms=0
    )
    registry.save_artifact("bench", "bench-train", model, now_ms=0)
    con.close()


def reasons_on_read(path: str, profile_ids: list[str]) -> None:
    con = duckdb.connect(path)
    try:
        for pid in profile_ids:
            score_reasons(con, [pid])
    finally:
        con.close()


def learner_comparison(ts: TrainingSet, rounds: int) -> None:
    """HistGradientBoosting vs LightGBM on the same rows: fit time and validation ROC AUC."""
    try:
        import lightgbm
    except ImportError:
        print("\n(lightgbm not installed: learner comparison skipped)")
        return
    fit_rows, valid_rows = np.flatnonzero(ts.cutoff_ms == 0), np.flatnonzero(ts.cutoff_ms == 1)
    X, y = ts.X, ts.y

    def hgb() -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(
            X[fit_rows], y[fit_rows]
        )

    def lgb() -> lightgbm.LGBMClassifier:
        return lightgbm.LGBMClassifier(n_estimators=200, random_state=0, verbose=-1).fit(
            X[fit_rows], y[fit_rows]
        )

    a, b, ratio = interleave(hgb, lgb, rounds)
    auc_h = roc_auc_score(y[valid_rows], hgb().predict_proba(X[valid_rows])[:, 1])
    auc_l = roc_auc_score(y[valid_rows], lgb().predict_proba(X[valid_rows])[:, 1])
    print("\n| learner | fit s | validation ROC AUC |")
    print("| --- | --- | --- |")
    print(f"| HistGradientBoosting | {a:.2f} | {auc_h:.4f} |")
    print(f"| LightGBM {lightgbm.__version__} | {b:.2f} | {auc_l:.4f} |")
    print(f"| ratio HGB / LightGBM | {ratio:.2f} | |")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleave(
    ours: Callable[[], object], base: Callable[[], object], rounds: int
) -> tuple[float, float, float]:
    ours(), base()  # warm-up
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(ours))
        b.append(timed(base))
    return (
        statistics.median(a),
        statistics.median(b),
        statistics.median(x / y for x, y in zip(a, b, strict=True)),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--eager-reasons", action="store_true",
                        help="also time the former eager reasons (one pass per feature)")  # fmt: skip
    parser.add_argument(
        "--steps",
        default="",
        help="only the steps whose name has one of these words (comma-separated)",
    )
    parser.add_argument("--threads", type=int, default=0,
                        help="cap BLAS/OpenMP threads (0: the libraries' default)")  # fmt: skip
    args = parser.parse_args()
    with threadpool_limits(args.threads or None):
        run(args)


def run(args: argparse.Namespace) -> None:
    scratch = tempfile.mkdtemp(prefix="segflow-bench-ml-")
    ours_db = os.path.join(scratch, "warehouse.duckdb")
    matrix, y, cutoff = generate(args.profiles)
    ts = TrainingSet(matrix.profile_ids, cutoff, matrix.columns, matrix.values, y)
    target = parse_target('performs "Order Completed" within 7 days')
    model = train(ts, target)
    raw = raw_train(ts)
    prepare_scoring(model, matrix, ours_db)
    n = args.profiles
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    threads = args.threads or "default"
    print(f"ML benchmark: {n:,} profiles, {args.rounds} rounds, {machine}, threads {threads}\n")
    print("| step | segflow s | raw library s | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    rows = [
        (
            "clustering incl. choice of k",
            lambda: ours_clusters(matrix),
            lambda: raw_clusters(matrix.values),
            "<= 30 s at 1M",
        ),
        ("propensity training", lambda: train(ts, target), lambda: raw_train(ts), "<= 60 s at 1M"),
        (
            "scoring all profiles (predictions)",
            lambda: model.score(matrix),
            lambda: raw.predict_proba(matrix.values)[:, 1],
            "<= 10 s at 1M",
        ),
        (
            "scoring job: scores + inputs for reasons, written to DuckDB",
            lambda: ours_score_and_store(matrix, ours_db),
            lambda: raw_score_and_store(raw, ours_db),
            "<= 10 s at 1M",
        ),
    ]
    for name, ours, base, goal in rows:
        if args.steps and not any(word in name for word in args.steps.split(",")):
            continue
        a, b, ratio = interleave(ours, base, args.rounds)
        print(f"| {name} | {a:.2f} | {b:.2f} | {ratio:.2f} | {goal} |", flush=True)
    sample = matrix.profile_ids[:: max(1, n // 20)][:20]
    per_profile = timed(lambda: reasons_on_read(ours_db, sample)) / len(sample)
    print(f"\nreasons of one profile on read: {1000 * per_profile:.1f} ms (mean of {len(sample)})")
    if args.eager_reasons:
        eager = timed(lambda: model.contributions(matrix))
        print(f"top-3 reasons of every profile at scoring time (before): {eager:.2f} s")
    learner_comparison(ts, args.rounds)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
