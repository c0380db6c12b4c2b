"""Why a profile has its score: the top contributing features, computed when the profile is read.

A scoring run stores, beside each score, the features it was computed from and the run whose
fitted model computed it (``ml_score_inputs``). Reading a profile's reasons loads that model and
measures, for each feature, how the score's log-odds change when the feature is set to the
training median (:meth:`~segflow.ml.propensity.PropensityModel.contributions`): the same
definition as before, for the few profiles someone looks at instead of one prediction pass per
feature over every profile at each scoring run (that was a minute at 1M profiles; BENCHMARKS.md).
Reasons stored by older releases (``ml_score_reasons``) are returned for models that have not
scored since.

>>> import duckdb
>>> score_reasons(duckdb.connect(), ["p1"])
{}
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np
from threadpoolctl import threadpool_limits

from segflow.ml.features import FeatureMatrix
from segflow.ml.propensity import PropensityModel
from segflow.ml.registry import Registry

TOP = 3


def score_reasons(
    con: duckdb.DuckDBPyConnection, profile_ids: list[str], *, top: int = TOP
) -> dict[str, list[list[Any]]]:
    """``{model: [[feature, contribution], ...]}`` for the first of ``profile_ids`` each model
    scored (a profile and the ones it absorbed), largest contribution first."""
    if not profile_ids or not _has_table(con, "ml_score_inputs"):
        return _stored(con, profile_ids)
    rows = con.execute(
        "SELECT profile_id, model, run_id, inputs FROM ml_score_inputs"
        " WHERE profile_id IN (SELECT unnest(CAST(? AS VARCHAR[])))",
        [profile_ids],
    ).fetchall()
    rank = {p: i for i, p in enumerate(profile_ids)}
    chosen: dict[str, tuple[str, list[float]]] = {}
    for _, model, run_id, inputs in sorted(rows, key=lambda r: rank[str(r[0])]):
        chosen.setdefault(str(model), (str(run_id), list(inputs)))
    out = {m: r for m, r in _stored(con, profile_ids).items() if m not in chosen}
    registry = Registry(con)
    for model, (run_id, inputs) in chosen.items():
        fitted = registry.load_artifact(model, run_id)
        if isinstance(fitted, PropensityModel):
            out[model] = explain(fitted, inputs, top=top)
    return out


def explain(model: PropensityModel, inputs: list[float], *, top: int = TOP) -> list[list[Any]]:
    """The ``top`` contributions behind one profile's score, as ``[feature, log-odds change]``."""
    matrix = FeatureMatrix(["_"], model.columns, np.asarray([inputs], dtype=np.float64))
    with threadpool_limits(1, user_api="openmp"):  # a dozen rows: threads only cost (10x, loaded)
        reasons = model.reasons(matrix, top)[0]
    return [[feature, value] for feature, value in reasons]


def _stored(con: duckdb.DuckDBPyConnection, profile_ids: list[str]) -> dict[str, Any]:
    if not profile_ids or not _has_table(con, "ml_score_reasons"):
        return {}
    rows = con.execute(
        "SELECT profile_id, model, reasons FROM ml_score_reasons"
        " WHERE profile_id IN (SELECT unnest(CAST(? AS VARCHAR[])))",
        [profile_ids],
    ).fetchall()
    rank = {p: i for i, p in enumerate(profile_ids)}
    out: dict[str, Any] = {}
    for _, model, reasons in sorted(rows, key=lambda r: -rank[str(r[0])]):
        out[str(model)] = json.loads(reasons) if isinstance(reasons, str) else reasons
    return out


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = current_schema()",
        [name],
    ).fetchall()
    return bool(found[0][0])
