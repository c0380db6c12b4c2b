"""The model registry and job results, stored in the warehouse (DuckDB).

Tables (created on first use):

- ``ml_models(name, kind, spec JSON, created_at_ms, updated_at_ms)``: model definitions.
- ``ml_runs(run_id, model, kind, job, status, started_at_ms, finished_at_ms, duration_ms,
  params JSON, data_window JSON, metrics JSON, error)``: one row per training/scoring job.
- ``ml_artifacts(model, run_id, created_at_ms, artifact BLOB)``: the fitted model (pickle; only
  ever read back from the warehouse the registry wrote).
- ``ml_cluster_names(model, cluster, name, renamed)``: cluster names, user renames kept.
- ``profile_scores(profile_id, model, score, scored_at_ms)``,
  ``profile_clusters(profile_id, model, cluster, assigned_at_ms, cluster_id)``: the attributes
  rules read (``cluster`` is the name, ``cluster_id`` the stable id).
- ``ml_score_inputs(profile_id, model, run_id, inputs DOUBLE[])``: the features each score was
  computed from, and the run whose artifact computed it (``segflow.ml.reasons`` explains a
  score from them on read).
- ``ml_score_reasons(profile_id, model, reasons JSON)``: reasons stored by older releases (read
  until the model's next scoring run replaces them).
- ``ml_score_history(run_id, profile_id, model, score, scored_at_ms)``: a fixed sample of
  profiles per scoring run, for backtests and drift.
- ``ml_live_models(model, run_id, created_at_ms, export JSON)``: what the processor needs to
  score a model on the fly (``segflow.ml.live``), the newest per model.

>>> import duckdb
>>> reg = Registry(duckdb.connect())
>>> reg.put_model(ModelSpec(name="churn", kind="propensity", target="no activity within 30 days"), now_ms=1)
>>> reg.get_model("churn").kind
'propensity'
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import duckdb
import msgspec

from segflow.ml.exceptions import MLInputError, ModelNotFound

Kind = Literal["propensity", "cluster", "ltv"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ml_models (name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, spec JSON NOT NULL,
        created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ml_runs (run_id VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        job VARCHAR NOT NULL, status VARCHAR NOT NULL, started_at_ms BIGINT NOT NULL, finished_at_ms BIGINT,
        duration_ms BIGINT, params JSON, data_window JSON, metrics JSON, error VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS ml_artifacts (model VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
        created_at_ms BIGINT NOT NULL, artifact BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ml_cluster_names (model VARCHAR NOT NULL, cluster INTEGER NOT NULL,
        name VARCHAR NOT NULL, renamed BOOLEAN NOT NULL DEFAULT false, PRIMARY KEY (model, cluster))""",
    """CREATE TABLE IF NOT EXISTS profile_scores (profile_id VARCHAR NOT NULL, model VARCHAR NOT NULL,
        score DOUBLE NOT NULL, scored_at_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS profile_clusters (profile_id VARCHAR NOT NULL, model VARCHAR NOT NULL,
        cluster VARCHAR NOT NULL, assigned_at_ms BIGINT NOT NULL, cluster_id INTEGER)""",
    """CREATE TABLE IF NOT EXISTS ml_score_reasons (profile_id VARCHAR NOT NULL, model VARCHAR NOT NULL, reasons JSON)""",
    """CREATE TABLE IF NOT EXISTS ml_score_inputs (profile_id VARCHAR NOT NULL, model VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL, inputs DOUBLE[] NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ml_live_models (model VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL,
        created_at_ms BIGINT NOT NULL, export JSON NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ml_score_history (run_id VARCHAR NOT NULL, profile_id VARCHAR NOT NULL,
        model VARCHAR NOT NULL, score DOUBLE NOT NULL, scored_at_ms BIGINT NOT NULL)""",
)


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A model definition. ``target`` for propensity models; ``k`` (None = automatic) for clusters;
    ``horizon_days`` and the transaction event for LTV; ``schedule`` is a cron-like daily time."""

    name: str
    kind: Kind
    target: str | None = None
    k: int | None = None
    features: tuple[str, ...] | None = None
    # feature name -> segment-language value expression: features as computed traits, scored
    # on the fly by the processor when the learner is logistic or the model clusters
    feature_traits: dict[str, str] | None = None
    learner: Literal["boosting", "logistic"] = "boosting"
    n_cutoffs: int = 4
    horizon_days: int = 365
    order_event: str = "Order Completed"
    schedule: str = "daily"
    description: str = ""


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored job result."""

    run_id: str
    model: str
    kind: str
    job: str
    status: str
    started_at_ms: int
    finished_at_ms: int | None = None
    duration_ms: int | None = None
    params: dict[str, Any] = {}
    data_window: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    error: str | None = None


DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="purchase_7d", kind="propensity", target='performs "Order Completed" within 7 days'
    ),
    ModelSpec(name="churn", kind="propensity", target="no activity within 30 days"),
    ModelSpec(
        name="bundle_72h",
        kind="propensity",
        target='"Order Completed" in 2+ distinct category within 72 hours',
    ),
    ModelSpec(name="customer_segments", kind="cluster"),
    ModelSpec(name="ltv", kind="ltv", horizon_days=365),
)

KEEP_ARTIFACTS = 3
_RUN_COLUMNS = "run_id, model, kind, job, status, started_at_ms, finished_at_ms, duration_ms, params, data_window, metrics, error"


class Registry:
    """Model definitions, job results and artifacts in one DuckDB connection (the warehouse's)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        for statement in _SCHEMA:
            con.execute(statement)
        _add_cluster_ids(con)

    def put_model(self, spec: ModelSpec, *, now_ms: int) -> None:
        """Create or replace a model definition (live features are checked first:
        ``MLInputError`` on field ``feature_traits``)."""
        if spec.feature_traits is not None:
            from segflow.ml.live import check_features

            check_features(spec.feature_traits)
        self.con.execute(
            "INSERT INTO ml_models VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,"
            " spec = excluded.spec, updated_at_ms = excluded.updated_at_ms",
            [spec.name, spec.kind, msgspec.json.encode(spec).decode(), now_ms, now_ms],
        )

    def get_model(self, name: str) -> ModelSpec:
        """The stored definition, else a built-in default of that name."""
        row = next(
            iter(self.con.execute("SELECT spec FROM ml_models WHERE name = ?", [name]).fetchall()),
            None,
        )
        if row is not None:
            return msgspec.json.decode(row[0], type=ModelSpec)
        for spec in DEFAULT_MODELS:
            if spec.name == name:
                return spec
        raise ModelNotFound(name)

    def defined_models(self) -> set[str]:
        """The names of the models someone defined (stored), not the built-in defaults."""
        return {str(r[0]) for r in self.con.execute("SELECT name FROM ml_models").fetchall()}

    def list_models(self) -> list[ModelSpec]:
        stored = [
            msgspec.json.decode(r[0], type=ModelSpec)
            for r in self.con.execute("SELECT spec FROM ml_models ORDER BY name").fetchall()
        ]
        names = {s.name for s in stored}
        return sorted(
            stored + [s for s in DEFAULT_MODELS if s.name not in names], key=lambda s: s.name
        )

    def record_run(self, run: RunRecord) -> None:
        enc = msgspec.json.encode
        self.con.execute(
            f"INSERT OR REPLACE INTO ml_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run.run_id, run.model, run.kind, run.job, run.status, run.started_at_ms, run.finished_at_ms,
             run.duration_ms, enc(run.params).decode(), enc(run.data_window).decode(), enc(run.metrics).decode(), run.error],
        )  # fmt: skip

    def runs(self, model: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Job results, newest first."""
        where, args = ("WHERE model = ?", [model]) if model else ("", [])
        rows = self.con.execute(
            f"SELECT {_RUN_COLUMNS} FROM ml_runs {where} ORDER BY started_at_ms DESC, rowid DESC LIMIT {int(limit)}",
            args,
        ).fetchall()
        return [_run(r) for r in rows]

    def last_run(
        self, model: str, job: str | None = None, status: str = "succeeded"
    ) -> RunRecord | None:
        for run in self.runs(model, limit=200):
            if run.status == status and (job is None or run.job == job):
                return run
        return None

    def training_warning(self, model: str) -> str | None:
        """The newest successful training's warning (e.g. not better than its baseline, so
        not used for scoring), or None."""
        trained = self.last_run(model, "train")
        return None if trained is None else trained.metrics.get("warning")

    def save_artifact(self, model: str, run_id: str, obj: object, *, now_ms: int) -> None:
        """Store a fitted model; the newest ``KEEP_ARTIFACTS`` of each model are kept."""
        self.con.execute(
            "INSERT INTO ml_artifacts VALUES (?, ?, ?, ?)",
            [model, run_id, now_ms, pickle.dumps(obj)],
        )
        self.con.execute(
            "DELETE FROM ml_artifacts WHERE model = ? AND rowid NOT IN (SELECT rowid FROM ml_artifacts"
            " WHERE model = ? ORDER BY created_at_ms DESC, rowid DESC LIMIT ?)",
            [model, model, KEEP_ARTIFACTS],
        )

    def latest_artifact(self, model: str) -> tuple[str, Any]:
        """The run id and fitted model object of ``model``'s newest artifact."""
        rows = self.con.execute(
            "SELECT run_id, artifact FROM ml_artifacts WHERE model = ? ORDER BY created_at_ms DESC, rowid DESC LIMIT 1",
            [model],
        ).fetchall()
        if not rows:
            raise ModelNotFound(model, details={"reason": "never trained"})
        return str(rows[0][0]), pickle.loads(rows[0][1])

    def load_artifact(self, model: str, run_id: str | None = None) -> Any:
        """The fitted model object of ``model``: the newest, or the one of ``run_id``."""
        if run_id is None:
            return self.latest_artifact(model)[1]
        rows = self.con.execute(
            "SELECT artifact FROM ml_artifacts WHERE model = ? AND run_id = ?", [model, run_id]
        ).fetchall()
        if not rows:
            raise ModelNotFound(model, details={"reason": f"no artifact of run {run_id}"})
        return pickle.loads(rows[0][0])

    def save_live_model(self, export: dict[str, Any], *, now_ms: int) -> None:
        """Store ``model``'s live-scoring export (``segflow.ml.live``), replacing the previous."""
        self.con.execute(
            "INSERT OR REPLACE INTO ml_live_models VALUES (?, ?, ?, ?)",
            [export["model"], export["run_id"], now_ms, msgspec.json.encode(export).decode()],
        )

    def live_models(self) -> list[dict[str, Any]]:
        """Every model's newest live-scoring export (what the processor loads on start)."""
        rows = self.con.execute("SELECT export FROM ml_live_models ORDER BY model").fetchall()
        return [msgspec.json.decode(r[0]) for r in rows]

    def cluster_names(self, model: str) -> dict[int, tuple[str, bool]]:
        rows = self.con.execute(
            "SELECT cluster, name, renamed FROM ml_cluster_names WHERE model = ?", [model]
        ).fetchall()
        return {int(c): (str(n), bool(r)) for c, n, r in rows}

    def rename_cluster(
        self,
        model: str,
        cluster: int,
        name: str,
        *,
        sink: ClusterSink | None = None,
        now_ms: int = 0,
    ) -> str:
        """Give a cluster a user name (it survives retrains: the id is stable); returns the old name.

        The members' labels change in ``profile_clusters`` and, through ``sink`` (the processor),
        in profile state, so both evaluators see the new name. Rules on the id
        (``cluster id of model M = N``, what a saved cluster segment uses) keep their members.
        """
        names = self.cluster_names(model)
        if int(cluster) not in names:
            raise ModelNotFound(f"{model}/cluster {cluster}")
        taken = [c for c, (n, _) in names.items() if n == name and c != int(cluster)]
        if taken:
            raise MLInputError("name", f"cluster {taken[0]} of {model} is already called {name!r}")
        old_name = names[int(cluster)][0]
        self.con.execute(
            "UPDATE ml_cluster_names SET name = ?, renamed = true WHERE model = ? AND cluster = ?",
            [name, model, cluster],
        )
        self.con.execute(
            "UPDATE profile_clusters SET cluster = ? WHERE model = ? AND cluster_id = ?",
            [name, model, cluster],
        )
        if sink is not None:
            rows = self.con.execute(
                "SELECT profile_id FROM profile_clusters WHERE model = ? AND cluster_id = ?",
                [model, cluster],
            ).fetchall()
            sink.put_clusters(model, [(str(r[0]), name, int(cluster)) for r in rows], now_ms)
        return old_name


class ClusterSink(Protocol):
    """Where renamed labels go besides the warehouse (``segflow.ml.jobs.AttributeSink``)."""

    def put_clusters(
        self, model: str, values: Sequence[tuple[str, str, int]], at_ms: int
    ) -> None: ...


def _add_cluster_ids(con: duckdb.DuckDBPyConnection) -> None:
    """Warehouses from before ``profile_clusters.cluster_id``: add it, filled from the names."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'profile_clusters'"
        " AND column_name = 'cluster_id' AND schema_name = current_schema()"
    ).fetchall()
    if found[0][0]:
        return
    con.execute("ALTER TABLE profile_clusters ADD COLUMN cluster_id INTEGER")
    con.execute(
        "UPDATE profile_clusters SET cluster_id = n.cluster FROM ml_cluster_names n"
        " WHERE n.model = profile_clusters.model AND n.name = profile_clusters.cluster"
    )


def _run(row: tuple[Any, ...]) -> RunRecord:
    dec = msgspec.json.decode
    return RunRecord(
        run_id=row[0], model=row[1], kind=row[2], job=row[3], status=row[4], started_at_ms=row[5],
        finished_at_ms=row[6], duration_ms=row[7], params=dec(row[8]) if row[8] else {},
        data_window=dec(row[9]) if row[9] else {}, metrics=dec(row[10]) if row[10] else {}, error=row[11],
    )  # fmt: skip
