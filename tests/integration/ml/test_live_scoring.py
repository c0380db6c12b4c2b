"""One truth: the processor's live scores and clusters equal the batch model's.

Real parts: generated histories in a SQLite log, the processor (SQLite state) whose rule set
carries the models' features as computed traits, the warehouse loader into a DuckDB file, and
the jobs training a logistic propensity model and a K-Means model on features computed by the
segment language's SQL compiler; the jobs hand their exports to the processor, which scores
profiles as their events arrive and as their windows slide.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest
from tests.support.pipeline import settle

from segflow.clock import DAY_MS, HOUR_MS, ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.ml.jobs import JobContext, run_job
from segflow.ml.live import DEFAULT_LIVE_FEATURES, live_traits, traits_at
from segflow.ml.registry import ModelSpec, Registry
from segflow.rules import compile_segments
from segflow.server.ml import MlService
from segflow.spec import Event, MembershipChange
from segflow.stream import Processor, ProfileReader, SqliteStateStore
from segflow.stream.live import LiveScoring
from segflow.warehouse.loader import WarehouseLoader

from .conftest import generate_events

DAYS = 60
NOW = DAYS * DAY_MS
SCORE, CLUSTER = "buyer", "segs"
FEATURES = dict(DEFAULT_LIVE_FEATURES)
TRAITS = live_traits({SCORE: FEATURES})  # the cluster model shares them: computed once


@dataclass
class Live:
    clock: ManualClock
    log: SqliteEventLog
    processor: Processor
    reader: ProfileReader
    loader: WarehouseLoader

    def settle(self) -> None:
        settle(self.processor, self.loader)

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.loader.path))

    def job(self, name: str, job: str) -> None:
        con = self.warehouse()
        try:
            ctx = JobContext(con=con, clock=self.clock, sink=self.processor, threads=1)
            run_job(ctx, name, job)
        finally:
            con.close()
        self.settle()

    def rules(self, segments: dict[str, str]) -> None:
        self.processor.set_evaluator(compile_segments(segments))
        self.settle()

    def batch_truth(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The batch models' scores and clusters on the warehouse's features at the clock."""
        con = self.warehouse()
        try:
            reg = Registry(con)
            matrix = traits_at(con, FEATURES, self.clock.now_ms())
            scores = reg.latest_artifact(SCORE)[1].score(matrix)
            clusters = reg.latest_artifact(CLUSTER)[1].assign(matrix)
        finally:
            con.close()
        return matrix.profile_ids, scores, clusters

    def send(self, user: str, names: list[str], at_ms: int, tag: str) -> None:
        self.log.append(
            [
                Event(type="track", source_id="web", message_id=f"{tag}-{i}", event=name,
                      timestamp_ms=at_ms, received_at_ms=at_ms, user_id=user,
                      properties={"revenue": 120.0, "category": f"c{i}"} if name == "Order Completed" else {})
                for i, name in enumerate(names)
            ]
        )  # fmt: skip


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    clock = ManualClock(NOW)
    processor = Processor(log, SqliteStateStore(tmp_path / "state.sqlite"), clock=clock)
    reader = ProfileReader(processor.store.reader(), log)
    loader = WarehouseLoader(log, processor.change_feed(), tmp_path / "warehouse.duckdb", clock)
    processor.set_evaluator(compile_segments({}))  # the live models add their traits
    rows = generate_events(150, seed=5, days=DAYS).to_pylist()
    log.append(
        [
            Event(type="track", source_id="web", message_id=r["message_id"], event=r["event"],
                  timestamp_ms=r["timestamp_ms"], received_at_ms=r["timestamp_ms"],
                  user_id=r["profile_id"], properties=json.loads(r["properties"]))
            for r in rows
        ]
    )  # fmt: skip
    found = Live(clock, log, processor, reader, loader)
    found.settle()
    con = found.warehouse()
    reg = Registry(con)
    reg.put_model(ModelSpec(name=SCORE, kind="propensity", target='performs "Order Completed" within 7 days',
                            feature_traits=FEATURES, learner="logistic"), now_ms=NOW)  # fmt: skip
    reg.put_model(ModelSpec(name=CLUSTER, kind="cluster", k=4, feature_traits=FEATURES), now_ms=NOW)
    con.close()
    found.job(SCORE, "train")
    found.job(CLUSTER, "cluster")
    yield found
    reader.close()
    processor.store.close()
    log.close()


def assert_one_truth(live: Live) -> int:
    ids, scores, clusters = live.batch_truth()
    for pid, score, cluster in zip(ids, scores.tolist(), clusters.tolist(), strict=True):
        profile = live.reader.get(pid)
        assert profile is not None, pid
        assert abs(profile.scores[SCORE] - score) <= 1e-9, (pid, profile.scores[SCORE], score)
        assert profile.cluster_ids[CLUSTER] == cluster, pid
    return len(ids)


def test_live_scores_and_clusters_equal_the_batch_models_as_events_arrive_and_time_passes(
    live: Live,
) -> None:
    con = live.warehouse()
    trained = Registry(con).last_run(SCORE, "train")
    con.close()
    assert trained is not None and trained.metrics["used_for_scoring"], trained
    assert "LogisticRegression" in trained.metrics["learner"]
    assert assert_one_truth(live) == 150  # the run's own values, pushed and recomputed live
    some = live.reader.lookup("user_id", "p00002")
    assert some is not None and set(TRAITS) <= set(some.computed_traits)  # added by the exports

    # an hour later: new events for some profiles, windows sliding for everybody else
    live.clock.set(NOW + HOUR_MS)
    for k, user in enumerate(("p00001", "p00004", "p00010")):
        live.send(user, ["Order Completed", "Product Viewed", "Order Completed"], NOW + k, f"n{k}")
    live.settle()
    assert assert_one_truth(live) == 150

    # two days on: the 1- and 7-day windows moved without any event (the processor's timers)
    live.clock.set(NOW + 2 * DAY_MS)
    live.settle()
    assert assert_one_truth(live) == 150

    # the next run's card: its scores beside the live ones since the last run, and the drift
    live.job(SCORE, "score")
    con = live.warehouse()
    card = Registry(con).last_run(SCORE, "score")
    con.close()
    assert card is not None and card.metrics["live"] is True
    compared = card.metrics["live_vs_batch"]
    assert compared["profiles"]["batch"] == 150 and 0 < compared["profiles"]["live"] <= 150
    assert abs(sum(compared["batch"]) - 1) < 1e-3 and abs(sum(compared["live"]) - 1) < 1e-3
    assert compared["psi"] >= 0


def test_a_first_seen_profile_gets_its_score_cluster_and_segments_in_the_batch_of_its_first_events(
    live: Live,
) -> None:
    con = live.warehouse()
    ranked = np.sort(
        con.execute("SELECT score FROM profile_scores WHERE model = ?", [SCORE]).fetchnumpy()[
            "score"
        ]
    )
    ids = sorted(
        c for (c,) in con.execute("SELECT DISTINCT cluster_id FROM profile_clusters").fetchall()
    )
    con.close()  # fmt: skip
    threshold = float(np.quantile(ranked, 0.5))
    segments = {"likely": f"score {SCORE} >= {threshold!r}", "top": f"score {SCORE} in top 50%"}
    segments |= {f"cluster_{c}": f"cluster id of model {CLUSTER} = {c}" for c in ids}
    live.rules(segments)
    changes_before = len(live.processor.change_feed().read(0, 1_000_000))

    at = NOW + HOUR_MS
    live.clock.set(at)
    live.send("newcomer", ["Product Viewed", "Order Completed", "Order Completed"] * 3, at, "new")
    assert live.processor.run_once() == 9  # one batch: the newcomer's first events

    profile = live.reader.lookup("user_id", "newcomer")
    assert profile is not None
    score = profile.scores[SCORE]
    assert score >= threshold and profile.scores[f"{SCORE}:top"] <= 0.5
    cluster = profile.cluster_ids[CLUSTER]
    assert set(profile.members) == {"likely", "top", f"cluster_{cluster}"}
    entered = {
        c.segment
        for _, c in live.processor.change_feed().read(0, 1_000_000)[changes_before:]
        if isinstance(c, MembershipChange) and c.profile_id == profile.profile_id
    }
    assert entered == {"likely", "top", f"cluster_{cluster}"}

    live.settle()
    assert assert_one_truth(live) == 151


def test_serve_hands_the_stored_exports_to_a_restarted_processor(live: Live) -> None:
    restarted = LiveScoring()
    service = MlService(live.warehouse, live.clock, sink=restarted)
    assert service.load_live_models() == 2
    models = restarted.models()
    assert sorted(models) == sorted([CLUSTER, SCORE])
    assert models[SCORE].kind == "logistic" and models[CLUSTER].kind == "kmeans"
    assert restarted.traits() == TRAITS


def test_a_visitor_who_logs_in_is_scored_as_the_merged_profile(live: Live) -> None:
    at = NOW + HOUR_MS
    live.clock.set(at)
    live.log.append(
        [
            Event(type="page", source_id="web", message_id=f"v{i}", timestamp_ms=at,
                  received_at_ms=at, anonymous_id="visitor", name="Home")
            for i in range(3)
        ]
    )  # fmt: skip
    live.settle()
    visitor = live.reader.lookup("anonymous_id", "visitor")
    assert visitor is not None and SCORE in visitor.scores and CLUSTER in visitor.cluster_ids
    # she logs in as a known customer: one profile with both histories, scored at once
    live.log.append(
        [
            Event(type="identify", source_id="web", message_id="login", timestamp_ms=at,
                  received_at_ms=at, anonymous_id="visitor", user_id="p00007")
        ]
    )  # fmt: skip
    live.settle()
    merged = live.reader.lookup("anonymous_id", "visitor")
    assert merged is not None and merged == live.reader.lookup("user_id", "p00007")
    assert assert_one_truth(live) == 150
