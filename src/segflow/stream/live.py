"""Models applied in the stream: scores and clusters that move in the batch of the event.

``segflow.ml`` trains in the warehouse and exports what scoring needs as plain numbers
(``segflow.ml.live``: log flags, scaler, logistic coefficients and calibration, K-Means
centroids with their stable ids and names). The processor's rule set carries each model's
features as computed traits named ``ml.<model>.<feature>`` (:meth:`LiveScoring.traits`), so
the incremental evaluator keeps them current as events and timers arrive. At the end of every
state transaction, after its rules ran, :meth:`LiveScoring.apply` takes the profiles the
transaction changed, scores them with numpy (one call per model per transaction), stores the
score and its rank (``M``, ``M:top``, ``M:bottom``, as a batch run does) or the cluster (its
name and stable id) on the profile, and re-evaluates the rules of the profiles whose values
changed, in the same transaction: ``score M >= x``, ``score M in top P%`` and
``cluster id of model M = k`` change with the event that moved them, also for a profile seen
for the first time.

The rank of a live score is taken against the last batch run's scores (sorted, in the
export): the share of them at least as high (``M:top``) and at most as high (``M:bottom``).

>>> live = LiveScoring()
>>> live.put_live_model({"model": "m", "kind": "logistic", "run_id": "r", "features": {"n": "count(any event)"},
...     "log1p": [True], "mean": [0.0], "scale": [1.0], "coefficients": [1.0], "intercept": 0.0,
...     "calibration": [{"method": "sigmoid", "a": -1.0, "b": 0.0}], "ranked_scores": [0.5, 0.9]})
>>> live.traits()
{'ml.m.n': 'count(any event)'}
>>> model = live.models()["m"]
>>> round(float(model.score(np.array([[np.e - 1]]))[0]), 4)
0.7311
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from segflow.profiles import Profile
from segflow.rules import SegmentProgram, compile_segments
from segflow.rules.ast import ClusterRef, ScoreRef, rank_key
from segflow.rules.incremental.plan import DEFAULT_LATE_MS
from segflow.rules.passes import values
from segflow.spec.changes import ScoreChanged
from segflow.stream.batch import Batch

FloatArray = npt.NDArray[np.float64]
log = logging.getLogger(__name__)


class Reevaluate(Protocol):
    """What re-runs a profile's rules (``EventHandler.on_timer``)."""

    def on_timer(self, batch: Batch, profile_id: str, now_ms: int) -> None: ...


class LiveModel:
    """One exported model, ready to score a feature matrix (rows: profiles, columns: the
    export's features in order). Raises ``ValueError`` on an export it cannot use."""

    def __init__(self, export: Mapping[str, Any]) -> None:
        self.name = str(export["model"])
        self.kind = str(export["kind"])
        self.run_id = str(export.get("run_id", ""))
        self.features: dict[str, str] = dict(export["features"])
        # the computed traits holding the features (a shared expression: one trait, see
        # LiveScoring.traits)
        self.traits = [f"ml.{self.name}.{f}" for f in self.features]
        self.log1p = np.asarray(export["log1p"], dtype=bool)
        self.mean = np.asarray(export["mean"], dtype=np.float64)
        self.scale = np.asarray(export["scale"], dtype=np.float64)
        width = len(self.features)
        if not (len(self.log1p) == len(self.mean) == len(self.scale) == width):
            raise ValueError(f"{self.name}: the export's transforms do not match its features")
        if self.kind == "logistic":
            self.coefficients = np.asarray(export["coefficients"], dtype=np.float64)
            self.intercept = float(export["intercept"])
            self.calibration: list[dict[str, Any]] = list(export["calibration"])
            self.ranked = np.asarray(export.get("ranked_scores", []), dtype=np.float64)
            if len(self.coefficients) != width or not self.calibration:
                raise ValueError(f"{self.name}: coefficients or calibration missing")
        elif self.kind == "kmeans":
            self.centroids = np.asarray(export["centroids"], dtype=np.float64)
            self.cluster_ids = np.asarray(export["cluster_ids"], dtype=np.int64)
            self.names = {int(k): str(v) for k, v in export["names"].items()}
            if self.centroids.shape != (len(self.cluster_ids), width):
                raise ValueError(f"{self.name}: centroids do not match the features")
        else:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not scored live")

    def scaled(self, X: FloatArray) -> FloatArray:
        """``log1p(max(x, 0))`` on the flagged columns, then standard scaling."""
        out = np.array(X, dtype=np.float64, copy=True)
        if self.log1p.any():
            out[:, self.log1p] = np.log1p(np.maximum(out[:, self.log1p], 0.0))
        out -= self.mean
        out /= self.scale
        return out

    def score(self, X: FloatArray) -> FloatArray:
        """Calibrated probabilities (the mean over the export's calibrators)."""
        logit = self.scaled(X) @ self.coefficients + self.intercept
        total = np.zeros(len(logit))
        for cal in self.calibration:
            if cal["method"] == "isotonic":
                p = np.interp(logit, np.asarray(cal["x"]), np.asarray(cal["y"]))
            else:
                p = 1.0 / (1.0 + np.exp(cal["a"] * logit + cal["b"]))
            p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0
            total += p
        out: FloatArray = total / len(self.calibration)
        return out

    def ranks(self, scores: FloatArray) -> tuple[FloatArray, FloatArray] | None:
        """Top and bottom shares of ``scores`` against the last batch run's (None: no run)."""
        n = len(self.ranked)
        if n == 0:
            return None
        top = (n - np.searchsorted(self.ranked, scores, side="left")) / n
        bottom = np.searchsorted(self.ranked, scores, side="right") / n
        return top, bottom

    def assign(self, X: FloatArray) -> npt.NDArray[np.int64]:
        """The stable cluster id of the nearest centroid (squared euclidean, scaled space)."""
        scaled = self.scaled(X)
        d = (scaled**2).sum(axis=1)[:, None] - 2 * scaled @ self.centroids.T
        d += (self.centroids**2).sum(axis=1)[None, :]
        out: npt.NDArray[np.int64] = self.cluster_ids[np.argmin(d, axis=1)]
        return out


class LiveScoring:
    """The processor's live models: loaded on start (:meth:`load`), replaced when a run
    completes (:meth:`put_live_model`, thread-safe, taken at the next transaction's end)."""

    def __init__(self, precision: int | None = 2) -> None:
        # a live score change goes to the change feed (``ScoreChanged``) when the score
        # rounded to ``precision`` decimals changes; None: never
        self.precision = precision
        self._lock = threading.Lock()
        self._models: dict[str, LiveModel] = {}
        self._pending: dict[str, LiveModel] = {}
        self.scored = 0  # profiles scored (all models), for the benchmarks
        self.failed: dict[str, str] = {}  # models dropped after an error, and the error
        # models some rule reads (None: unknown, re-evaluate on every change)
        self._read: frozenset[str] | None = None

    def put_live_model(self, export: Mapping[str, Any]) -> None:
        """Queue an export (``segflow.ml.jobs.push_live_model``); a bad one raises
        ``ValueError`` to the job that pushed it."""
        model = LiveModel(export)
        with self._lock:
            self._pending[model.name] = model
        self.failed.pop(model.name, None)

    def load(self, exports: Iterable[Mapping[str, Any]]) -> None:
        """Every model's stored export (``Registry.live_models()``), on start."""
        for export in exports:
            self.put_live_model(export)

    def models(self) -> dict[str, LiveModel]:
        """The models in use and the ones queued (by name; a queued one replaces its name's)."""
        with self._lock:
            return {**self._models, **self._pending}

    def traits(self) -> dict[str, str]:
        """The computed traits the processor's rule set must carry for these models: one
        per distinct expression, named after the first model (by name) that declares it, so
        models sharing a feature set compute it once. Safe from any thread (the processor
        takes queued models only in its own, in :meth:`apply`)."""
        return {name: expr for expr, name in _trait_names(self.models()).items()}

    def extend(self, evaluator: Any) -> Any:
        """``evaluator`` with these models' feature traits added, when it is a compiled rule
        set (``segflow.rules.SegmentProgram``) that lacks some; else ``evaluator`` itself.

        >>> from segflow.rules import compile_segments
        >>> live = LiveScoring()
        >>> live.put_live_model({"model": "m", "kind": "kmeans", "features": {"n": "count(any event)"},
        ...     "log1p": [True], "mean": [0.0], "scale": [1.0], "centroids": [[0.0]], "cluster_ids": [0],
        ...     "names": {"0": "All"}})
        >>> sorted(live.extend(compile_segments({"a": "did any event"})).traits)
        ['ml.m.n']
        """
        traits = self.traits()
        if not isinstance(evaluator, SegmentProgram):
            self._read = None
            return evaluator
        self._read = frozenset(
            v.model
            for cond in evaluator.plan.segments.values()
            for v in values(cond)
            if isinstance(v, ScoreRef | ClusterRef)
        )
        if not traits:
            return evaluator
        if all(evaluator.traits.get(k) == v for k, v in traits.items()):
            return evaluator
        late = [q.horizon_ms for q in evaluator.plan.seqs.values()]  # a sequence keeps late_ms
        return compile_segments(
            evaluator.definitions,
            {**evaluator.traits, **traits},
            late_ms=late[0] if late else DEFAULT_LATE_MS,
        )

    @property
    def active(self) -> bool:
        return bool(self._models or self._pending)

    def _take_pending(self) -> None:
        if self._pending:
            with self._lock:
                self._models.update(self._pending)
                self._pending.clear()
                names = _trait_names(self._models)
                for model in self._models.values():
                    model.traits = [names[expr] for expr in model.features.values()]

    def apply(self, batch: Batch, handler: Reevaluate, now_ms: int) -> set[str]:
        """Score the profiles ``batch`` changed, store what moved, re-run their rules;
        returns the ids of the profiles whose score or cluster changed."""
        self._take_pending()
        if not self._models or not batch.dirty:
            return set()
        found = batch.profiles
        profiles = [
            p for pid in sorted(batch.dirty) if (p := found.get(pid)) is not None and not p.erasing
        ]
        changed: set[str] = set()
        reevaluate: set[str] = set()
        for model in list(self._models.values()):
            if model.name in self.failed:
                continue
            first = model.traits[0]
            rows = [p for p in profiles if first in p.computed_traits]
            if not rows:
                continue
            X = _matrix(rows, model.traits)
            self.scored += len(rows)
            moved: set[str] = set()
            try:
                if model.kind == "logistic":
                    scores = model.score(X)
                    self._feed(batch, model.name, rows, scores, now_ms)
                    _store_scores(model, rows, scores, moved)
                else:
                    _store_clusters(model, rows, model.assign(X), moved)
            except Exception as exc:  # a broken model never stops the stream: it is dropped
                log.exception("live model %s failed; it is no longer scored live", model.name)
                self.failed[model.name] = repr(exc)
                continue
            changed |= moved
            if self._read is None or model.name in self._read:
                reevaluate |= moved
        for pid in sorted(reevaluate):  # only rules reading a model that moved can change
            handler.on_timer(batch, pid, now_ms)
        return changed

    def _feed(
        self, batch: Batch, model: str, rows: list[Profile], scores: FloatArray, now_ms: int
    ) -> None:
        """``ScoreChanged`` for the profiles whose score moved by the feed's precision."""
        digits = self.precision
        if digits is None:
            return
        for profile, new in zip(rows, scores.tolist(), strict=True):
            old = profile.scores.get(model)
            if old is None or round(old, digits) != round(new, digits):
                batch.emit(
                    ScoreChanged(
                        profile_id=profile.profile_id,
                        model=model,
                        old=old,
                        new=new,
                        at_ms=now_ms,
                        sequence=profile.next_sequence(),
                    )
                )


def _trait_names(models: Mapping[str, LiveModel]) -> dict[str, str]:
    """Feature expression -> the computed trait that holds it: ``ml.<model>.<feature>`` of
    the first model (by name) that declares the expression."""
    names: dict[str, str] = {}
    for name in sorted(models):
        for feature, expr in models[name].features.items():
            names.setdefault(expr, f"ml.{name}.{feature}")
    return names


def _matrix(rows: list[Profile], traits: list[str]) -> FloatArray:
    """Feature values of each profile; null (``avg`` of no event) is 0. (``itemgetter`` and
    numpy's None -> nan: a third of the per-dict loop's time on the live benchmark.)"""
    take = itemgetter(*traits)
    try:
        values = [take(p.computed_traits) for p in rows]
        out = np.array(values, dtype=np.float64).reshape(len(rows), len(traits))
    except (KeyError, TypeError, ValueError):  # a trait missing, or not a number: one by one
        out = np.zeros((len(rows), len(traits)))
        for i, profile in enumerate(rows):
            for j, name in enumerate(traits):
                v = profile.computed_traits.get(name)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out[i, j] = v
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _store_scores(
    model: LiveModel, rows: list[Profile], scores: FloatArray, changed: set[str]
) -> None:
    name = model.name
    ranks = model.ranks(scores)
    top_key, bottom_key = rank_key(name, "top"), rank_key(name, "bottom")
    for i, profile in enumerate(rows):
        new = {name: float(scores[i])}
        if ranks is not None:
            new[top_key], new[bottom_key] = float(ranks[0][i]), float(ranks[1][i])
        if any(profile.scores.get(k) != v for k, v in new.items()):
            profile.scores = {**profile.scores, **new}
            changed.add(profile.profile_id)


def _store_clusters(
    model: LiveModel, rows: list[Profile], ids: npt.NDArray[np.int64], changed: set[str]
) -> None:
    name = model.name
    for profile, cid in zip(rows, ids.tolist(), strict=True):
        label = model.names.get(cid, str(cid))
        if profile.cluster_ids.get(name) != cid or profile.clusters.get(name) != label:
            profile.cluster_ids = {**profile.cluster_ids, name: cid}
            profile.clusters = {**profile.clusters, name: label}
            changed.add(profile.profile_id)
