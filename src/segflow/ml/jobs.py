"""ML jobs: train, score, cluster and LTV runs, each stored as a typed result in the registry.

A job reads the warehouse (``profile_events``, or the ``features`` relation), writes the
profile attributes rules read (``profile_scores``, ``profile_clusters``) and records a
:class:`~segflow.ml.registry.RunRecord` (parameters, data window, metrics, duration) whether
it succeeds or fails. When an :class:`AttributeSink` is given (the processor's profile store),
the new values are also pushed to it, so a score crossing a rule's threshold changes
memberships like any other input.

>>> import duckdb
>>> from segflow.clock import ManualClock
>>> ctx = JobContext(con=duckdb.connect(), clock=ManualClock(0))
>>> ctx.registry.get_model("churn").target
'no activity within 30 days'
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb
import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from segflow.clock import DAY_MS, Clock
from segflow.ml import cards as cards_mod
from segflow.ml.clustering import ClusterConfig, ClusterModel, changed_share, fit_clusters
from segflow.ml.exceptions import MLInputError, ModelNotFound
from segflow.ml.features import FEATURE_COLUMNS, FeatureMatrix, features_at, read_features
from segflow.ml.live import export_clusters, export_propensity, live_vs_batch, traits_at
from segflow.ml.metrics import classification_report, psi
from segflow.ml.propensity import PropensityModel, build_training_set, train, training_cutoffs
from segflow.ml.ranks import with_ranks
from segflow.ml.registry import ModelSpec, Registry, RunRecord
from segflow.ml.targets import parse_target
from segflow.telemetry.metrics import JOB_DURATION

Progress = Callable[[str, float], None]
HISTORY_SAMPLE = 10_000


class AttributeSink(Protocol):
    """Where profile attributes go besides the warehouse (the processor's profile state)."""

    def put_scores(self, model: str, values: Sequence[tuple[str, float]], at_ms: int) -> None: ...

    def put_clusters(
        self, model: str, values: Sequence[tuple[str, str, int]], at_ms: int
    ) -> None: ...  # (profile_id, cluster name, stable cluster id)


def _no_progress(step: str, fraction: float) -> None:
    return None


@dataclass
class JobContext:
    """What a job needs: the warehouse connection, a clock, where features come from."""

    con: duckdb.DuckDBPyConnection
    clock: Clock
    events_table: str = "profile_events"
    features_relation: str | None = None  # None: compute features from events at now
    sink: AttributeSink | None = None
    progress: Progress = _no_progress
    threads: int | None = None  # cap on BLAS/OpenMP threads (None: the libraries' default)
    registry: Registry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = Registry(self.con)

    def features_now(
        self, columns: tuple[str, ...], feature_traits: dict[str, str] | None = None
    ) -> FeatureMatrix:
        if feature_traits:  # features as computed traits: the segment language's SQL
            return traits_at(self.con, feature_traits, self.clock.now_ms())
        if self.features_relation:
            return read_features(self.con, self.features_relation, columns)
        return features_at(
            self.con, self.clock.now_ms(), events_table=self.events_table, columns=columns
        )


def run_job(ctx: JobContext, name: str, job: str | None = None) -> RunRecord:
    """Run the model's job (``train`` = train then score for propensity; ``cluster``; ``ltv``; ``score``)."""
    spec = ctx.registry.get_model(name)
    job = job or {"propensity": "train", "cluster": "cluster", "ltv": "ltv"}[spec.kind]
    started = ctx.clock.now_ms()
    run_id = f"{name}-{job}-{started}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    try:
        with threadpool_limits(ctx.threads) if ctx.threads else contextlib.nullcontext():
            params, window, metrics = _JOBS[job](ctx, spec, run_id)
    except Exception as exc:
        duration = int((time.perf_counter() - t0) * 1000)
        failed = RunRecord(run_id=run_id, model=name, kind=spec.kind, job=job, status="failed", started_at_ms=started,
                           finished_at_ms=started + duration, duration_ms=duration, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        ctx.registry.record_run(failed)
        JOB_DURATION.labels(job=f"ml_{job}", status="failed").observe(time.perf_counter() - t0)
        raise
    JOB_DURATION.labels(job=f"ml_{job}", status="succeeded").observe(time.perf_counter() - t0)
    duration = int((time.perf_counter() - t0) * 1000)
    run = RunRecord(run_id=run_id, model=name, kind=spec.kind, job=job, status="succeeded", started_at_ms=started,
                    finished_at_ms=started + duration, duration_ms=duration, params=params, data_window=window, metrics=metrics)  # fmt: skip
    ctx.registry.record_run(run)
    return run


JobOutput = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def _columns(spec: ModelSpec) -> tuple[str, ...]:
    if spec.feature_traits:
        return tuple(spec.feature_traits)
    return tuple(spec.features) if spec.features else FEATURE_COLUMNS


def push_live_model(ctx: JobContext, export: dict[str, Any]) -> None:
    """Store a live-scoring export in the registry and hand it to the sink when it takes
    models (the processor: ``put_live_model``), so live scoring follows every run."""
    ctx.registry.save_live_model(export, now_ms=ctx.clock.now_ms())
    put = getattr(ctx.sink, "put_live_model", None)
    if put is not None:
        put(export)


def _cluster_job(ctx: JobContext, spec: ModelSpec, run_id: str) -> JobOutput:
    now = ctx.clock.now_ms()
    ctx.progress("features", 0.1)
    matrix = ctx.features_now(_columns(spec), spec.feature_traits)
    previous = _previous_cluster_model(ctx.registry, spec.name)
    ctx.progress("k-means", 0.3)
    logged = frozenset(spec.feature_traits) if spec.feature_traits else None
    model = fit_clusters(matrix, ClusterConfig(k=spec.k), previous, log_columns=logged)
    assigned = model.assign(matrix)
    stored = ctx.registry.cluster_names(spec.name)
    names = cards_mod.name_clusters(model, {c: n for c, (n, renamed) in stored.items() if renamed})
    ctx.progress("write", 0.8)
    prev_ids = _previous_assignments(ctx.con, spec.name)
    _write_cluster_names(ctx.con, spec.name, names, stored)
    labels = [names[int(c)] for c in assigned]
    _replace(
        ctx.con,
        "profile_clusters",
        spec.name,
        {
            "profile_id": matrix.profile_ids,
            "model": spec.name,
            "cluster": labels,
            "assigned_at_ms": now,
            "cluster_id": assigned.astype(np.int32),
        },
    )
    ctx.registry.save_artifact(spec.name, run_id, model, now_ms=now)
    if spec.feature_traits:
        push_live_model(ctx, export_clusters(model, spec.name, run_id, spec.feature_traits, names))
    if ctx.sink is not None:
        ids = assigned.tolist()
        ctx.sink.put_clusters(
            spec.name, list(zip(matrix.profile_ids, labels, ids, strict=True)), now
        )
    cards = [dataclasses.asdict(c) for c in cards_mod.cluster_cards(model, assigned, names)]
    metrics = {
        "k": model.k,
        "silhouette_by_k": {str(k): round(v, 4) for k, v in model.silhouette_by_k.items()},
        "changed_share": round(changed_share(prev_ids, matrix.profile_ids, assigned), 4)
        if prev_ids
        else None,
        "cards": cards,
        "projection": cards_mod.projection(model, matrix, assigned),
    }
    ctx.progress("done", 1.0)
    return (
        {"k": spec.k, "features": list(matrix.columns)},
        {"as_of_ms": now, "profiles": len(matrix.profile_ids)},
        metrics,
    )


def _previous_cluster_model(registry: Registry, name: str) -> ClusterModel | None:
    try:
        obj = registry.load_artifact(name)
    except Exception:
        return None
    return obj if isinstance(obj, ClusterModel) else None


def _previous_assignments(con: duckdb.DuckDBPyConnection, model: str) -> dict[str, int]:
    rows = con.execute(
        "SELECT profile_id, cluster_id FROM profile_clusters WHERE model = ? AND cluster_id IS NOT NULL",
        [model],
    ).fetchall()
    return {str(p): int(c) for p, c in rows}


def _write_cluster_names(
    con: duckdb.DuckDBPyConnection,
    model: str,
    names: dict[int, str],
    stored: dict[int, tuple[str, bool]],
) -> None:
    con.execute("DELETE FROM ml_cluster_names WHERE model = ?", [model])
    for cluster, name in names.items():
        renamed = stored.get(cluster, ("", False))[1]
        con.execute(
            "INSERT INTO ml_cluster_names VALUES (?, ?, ?, ?)", [model, cluster, name, renamed]
        )


def _replace(
    con: duckdb.DuckDBPyConnection, table: str, model: str, columns: dict[str, Any]
) -> None:
    """Replace ``model``'s rows of ``table`` in one transaction (scalars in ``columns`` are broadcast)."""
    arrays = (list, np.ndarray, pa.Array)
    n = len(next(v for v in columns.values() if isinstance(v, arrays)))
    data = pa.table({k: v if isinstance(v, arrays) else [v] * n for k, v in columns.items()})
    con.execute("BEGIN")
    try:
        con.execute(f"DELETE FROM {table} WHERE model = ?", [model])
        _insert_arrow(con, table, data)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def write_scores(
    ctx: JobContext, model: str, profile_ids: Sequence[str], scores: np.ndarray, now: int
) -> None:
    """Replace ``model``'s scores, and each profile's rank in the run (``model:top``,
    ``model:bottom``: :mod:`segflow.ml.ranks`), in the warehouse in one transaction, then hand
    them to the sink (the processor), so both evaluators read the same numbers."""
    keyed = list(with_ranks(model, np.asarray(scores, dtype=np.float64)))
    ids = pa.array(list(profile_ids), pa.string())
    n = len(ids)
    data = pa.concat_tables(
        [
            pa.table(
                {
                    "profile_id": ids,
                    "model": [key] * n,
                    "score": pa.array(values, pa.float64()),
                    "scored_at_ms": [now] * n,
                }
            )
            for key, values in keyed
        ]
    )
    con = ctx.con
    con.execute("BEGIN")
    try:
        con.execute(
            f"DELETE FROM profile_scores WHERE model IN ({', '.join('?' * len(keyed))})",
            [key for key, _ in keyed],
        )
        _insert_arrow(con, "profile_scores", data)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    if ctx.sink is not None:
        for key, values in keyed:
            ctx.sink.put_scores(key, list(zip(profile_ids, values.tolist(), strict=True)), now)


def _train_job(ctx: JobContext, spec: ModelSpec, run_id: str) -> JobOutput:
    if not spec.target:
        raise MLInputError("target", f"model {spec.name!r} has no target")
    target = parse_target(spec.target)
    now = ctx.clock.now_ms()
    cutoffs = training_cutoffs(now, target.within_ms, spec.n_cutoffs)
    ctx.progress("training data", 0.1)
    ts = build_training_set(
        ctx.con,
        target,
        cutoffs,
        events_table=ctx.events_table,
        columns=_columns(spec),
        feature_traits=spec.feature_traits,
    )
    ctx.progress("fit", 0.4)
    model = train(ts, target, learner=spec.learner)
    warning = baseline_warning(spec.name, model.report)
    used = warning is None
    if used:
        ctx.registry.save_artifact(spec.name, run_id, model, now_ms=now)
    ctx.progress("score", 0.7)
    scoring: dict[str, Any] | None = None
    if used or _has_artifact(ctx.registry, spec.name):  # else: no model worth scoring with yet
        _, _, scoring = _score_job(ctx, spec, run_id)
    params = {"target": target.text, "n_cutoffs": spec.n_cutoffs, "features": list(ts.columns),
              "learner": spec.learner, "feature_traits": spec.feature_traits}  # fmt: skip
    window = {"cutoffs_ms": cutoffs, "label_window_ms": target.within_ms, "rows": len(ts.y)}
    verdict: dict[str, Any] = {"used_for_scoring": used}
    if warning is not None:
        verdict["warning"] = warning + (
            "; the previous model keeps scoring"
            if scoring is not None
            else "; no scores are written until a trained model beats it"
        )
    return params, window, {**model.report, **verdict, "scoring": scoring}


def baseline_warning(model: str, report: dict[str, Any]) -> str | None:
    """Why a trained model is not used, when its held-out ROC AUC is not above its baseline's
    (the logistic regression on recency and frequency measured in the same run); else None.

    >>> baseline_warning("churn", {"validation": {"roc_auc": 0.801}, "baseline": {"roc_auc": 0.823}})
    'churn: held-out ROC AUC 0.801 is not better than its baseline (0.823); this model is not used for scoring'
    """
    ours = report.get("validation", {}).get("roc_auc")
    theirs = report.get("baseline", {}).get("roc_auc")
    if ours is None or theirs is None or ours > theirs:
        return None
    return (
        f"{model}: held-out ROC AUC {ours:g} is not better than its baseline ({theirs:g});"
        " this model is not used for scoring"
    )


def _has_artifact(registry: Registry, model: str) -> bool:
    try:
        registry.latest_artifact(model)
    except ModelNotFound:
        return False
    return True


def _score_job(ctx: JobContext, spec: ModelSpec, run_id: str) -> JobOutput:
    artifact_run, model = ctx.registry.latest_artifact(spec.name)
    if not isinstance(model, PropensityModel):
        raise MLInputError("model", f"{spec.name!r} is not a propensity model")
    now = ctx.clock.now_ms()
    traits = _model_traits(spec, model.columns)
    matrix = ctx.features_now(model.columns, traits)
    scores = model.score(matrix)
    ids = pa.array(matrix.profile_ids, pa.string())
    write_scores(ctx, spec.name, matrix.profile_ids, scores, now)
    live = traits is not None and spec.learner == "logistic" and _is_logistic(model)
    previous = ctx.con.execute(
        "SELECT max(scored_at_ms) FROM ml_score_history WHERE model = ?", [spec.name]
    ).fetchall()[0][0]
    compared = live_vs_batch(ctx.con, spec.name, scores, previous) if live else None
    if live:
        assert traits is not None
        push_live_model(ctx, export_propensity(model, spec.name, artifact_run, traits, scores))
    # the inputs of every score: "why this score" is computed from them when a profile is read
    # (segflow.ml.reasons), instead of one prediction pass per feature for everyone here
    inputs = pa.FixedSizeListArray.from_arrays(pa.array(matrix.values.ravel()), len(model.columns))
    _replace(ctx.con, "ml_score_inputs", spec.name,
             {"profile_id": ids, "model": spec.name, "run_id": artifact_run, "inputs": inputs})  # fmt: skip
    ctx.con.execute("DELETE FROM ml_score_reasons WHERE model = ?", [spec.name])  # older releases
    drift = _drift_and_history(ctx, spec.name, run_id, matrix.profile_ids, scores, now)
    quantiles = (
        {f"{q:g}": round(float(np.quantile(scores, q)), 4) for q in (0.5, 0.75, 0.9, 0.99)}
        if len(scores)
        else {}
    )
    metrics = {"profiles": len(scores), "mean_score": round(float(scores.mean()), 4) if len(scores) else None, **drift,
               "score_quantiles": quantiles, "backtest": backtest(ctx, spec.name, model), "live": live,
               "live_vs_batch": compared}  # fmt: skip
    return {}, {"as_of_ms": now}, metrics


def _model_traits(spec: ModelSpec, columns: tuple[str, ...]) -> dict[str, str] | None:
    """The computed traits a model was trained on (None: warehouse features); a spec whose
    features changed since is refused until the model is retrained."""
    if not spec.feature_traits:
        return None
    missing = [c for c in columns if c not in spec.feature_traits]
    if missing:
        raise MLInputError(
            "feature_traits", f"{spec.name}: the trained model reads {missing}; retrain it"
        )
    return {c: spec.feature_traits[c] for c in columns}


def _is_logistic(model: PropensityModel) -> bool:
    return "logisticregression" in getattr(model.booster, "named_steps", {})


def _drift_and_history(
    ctx: JobContext, model: str, run_id: str, ids: list[str], scores: np.ndarray, now: int
) -> dict[str, Any]:
    con = ctx.con
    rows_prev = con.execute(
        "SELECT run_id FROM ml_score_history WHERE model = ? ORDER BY scored_at_ms DESC LIMIT 1",
        [model],
    ).fetchall()
    prev = rows_prev[0] if rows_prev else None
    sample = [
        i
        for i, p in enumerate(ids)
        if len(ids) <= HISTORY_SAMPLE or hash_bucket(p) < HISTORY_SAMPLE * 1000 // len(ids)
    ]
    history = pa.table({"run_id": [run_id] * len(sample), "profile_id": [ids[i] for i in sample], "model": [model] * len(sample),
                        "score": scores[sample], "scored_at_ms": [now] * len(sample)})  # fmt: skip
    _insert_arrow(con, "ml_score_history", history)
    if prev is None:
        return {"drift": None}
    rows = con.execute(
        "SELECT a.score, b.score FROM ml_score_history a JOIN ml_score_history b USING (profile_id, model)"
        " WHERE a.run_id = ? AND b.run_id = ?",
        [prev[0], run_id],
    ).fetchnumpy()
    old, new = rows["score"], rows["score_1"]
    if len(old) == 0:
        return {"drift": None}
    return {
        "drift": {
            "previous_run": prev[0],
            "psi": round(psi(old, new), 4),
            "mean_abs_change": round(float(np.abs(new - old).mean()), 4),
            "profiles": len(old),
        }
    }


def _insert_arrow(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    con.register("ml_insert_arrow", data)
    try:
        con.execute(
            f"INSERT INTO {table} ({', '.join(data.column_names)}) SELECT * FROM ml_insert_arrow"
        )
    finally:
        con.unregister("ml_insert_arrow")


def hash_bucket(profile_id: str) -> int:
    """A stable bucket in [0, 1000) of a profile id (the history sample).

    >>> hash_bucket("p1") == hash_bucket("p1")
    True
    """
    import zlib

    return zlib.crc32(profile_id.encode()) % 1000


def backtest(ctx: JobContext, model_name: str, model: PropensityModel) -> list[dict[str, Any]]:
    """Past scoring runs whose label window has closed: their scores vs what then happened."""
    now = ctx.clock.now_ms()
    window = model.target.within_ms
    runs = ctx.con.execute(
        "SELECT DISTINCT run_id, scored_at_ms FROM ml_score_history WHERE model = ? AND scored_at_ms + ? <= ? ORDER BY scored_at_ms DESC LIMIT 5",
        [model_name, window, now],
    ).fetchall()
    out = []
    for run_id, at in runs:
        rows = ctx.con.execute(
            "SELECT profile_id, score FROM ml_score_history WHERE run_id = ? ORDER BY profile_id",
            [run_id],
        ).fetchnumpy()
        from segflow.ml.propensity import _labels

        y = _labels(
            ctx.con, model.target, [str(p) for p in rows["profile_id"]], int(at), ctx.events_table
        )
        rep = classification_report(y, np.asarray(rows["score"]))
        out.append(
            {
                "run_id": run_id,
                "scored_at_ms": int(at),
                "roc_auc": rep["roc_auc"],
                "mean_score": round(float(np.mean(rows["score"])), 4),
                "observed_rate": rep["base_rate"],
                "n": rep["n"],
            }
        )
    return out


def _ltv_job(ctx: JobContext, spec: ModelSpec, run_id: str) -> JobOutput:
    from segflow.ml.lifetime import fit_summary, score_summary
    from segflow.ml.transactions import quote, summarise

    now = ctx.clock.now_ms()
    ctx.con.execute(
        f"CREATE OR REPLACE TEMP VIEW ml_orders AS SELECT profile_id, timestamp_ms, coalesce(TRY_CAST(properties->>'revenue' AS DOUBLE),"
        f" TRY_CAST(properties->>'total' AS DOUBLE), 0) AS amount FROM {quote(ctx.events_table)}"
        f" WHERE event = '{spec.order_event.replace(chr(39), chr(39) * 2)}' AND timestamp_ms <= {int(now)}"
    )
    calibration_end = time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    ctx.progress("summary", 0.2)
    summary = summarise(
        ctx.con,
        "ml_orders",
        "profile_id",
        "timestamp_ms",
        "amount",
        calibration_end=calibration_end,
        holdout_end=calibration_end,
        date_format="epoch_ms",
    )
    ctx.progress("fit", 0.5)
    fit = fit_summary(summary)
    values = score_summary(fit, summary, horizon_days=spec.horizon_days)
    ltv_model, alive_model = (
        spec.name,
        ("p_alive" if spec.name == "ltv" else f"{spec.name}_p_alive"),
    )
    for model_name, column in ((ltv_model, values["ltv"]), (alive_model, values["p_alive"])):
        write_scores(ctx, model_name, summary.customers, column, now)
    ctx.registry.save_artifact(spec.name, run_id, fit, now_ms=now)
    metrics = {
        **fit.to_dict(),
        "mean_ltv": round(float(values["ltv"].mean()), 4),
        "mean_p_alive": round(float(values["p_alive"].mean()), 4),
        "observed": observed_spend(ctx.con, spec.horizon_days),
    }
    return (
        {"horizon_days": spec.horizon_days, "order_event": spec.order_event},
        {"calibration_end": calibration_end, "customers": len(summary.customers)},
        metrics,
    )


def observed_spend(con: duckdb.DuckDBPyConnection, horizon_days: int) -> dict[str, Any]:
    """What the customers the LTV model was fitted on actually spent (from ``ml_orders``): the
    figure to hold ``mean_ltv`` against. ``at_observed_rate`` is the mean spend per customer
    over the history, scaled to the horizon (as if every customer kept buying at their pace).

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TEMP VIEW ml_orders AS SELECT * FROM (VALUES ('a', 0, 10.0), ('a', 864000000, 30.0), ('b', 0, 20.0)) t(profile_id, timestamp_ms, amount)")
    >>> observed_spend(con, 365)
    {'customers': 2, 'history_days': 10.0, 'mean_spend': 30.0, 'at_observed_rate': 1095.0}
    """
    customers, total, first, last = con.execute(
        "SELECT count(DISTINCT profile_id), sum(amount), min(timestamp_ms), max(timestamp_ms)"
        " FROM ml_orders"
    ).fetchone() or (0, None, None, None)
    if not customers:
        return {"customers": 0}
    days = max((last - first) / DAY_MS, 1.0)
    mean = float(total) / customers
    return {
        "customers": int(customers),
        "history_days": round(days, 2),
        "mean_spend": round(mean, 2),
        "at_observed_rate": round(mean * horizon_days / days, 2),
    }


_JOBS: dict[str, Callable[[JobContext, ModelSpec, str], JobOutput]] = {
    "cluster": _cluster_job,
    "train": _train_job,
    "score": _score_job,
    "ltv": _ltv_job,
}
SCHEDULE_MS = {"hourly": 3_600_000, "daily": DAY_MS, "nightly": DAY_MS, "weekly": 7 * DAY_MS}
