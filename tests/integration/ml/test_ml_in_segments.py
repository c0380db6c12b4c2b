"""ML outputs in segments, end to end: scores crossing a threshold and saved clusters.

Real parts: events in a SQLite log, the processor (SQLite state) into which jobs push scores
and clusters, the warehouse loader, the jobs on the loaded warehouse (and serve's scheduler
service), the segment catalog, and the SQL compiler on the warehouse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from tests.support.pipeline import settle

from segflow.clock import DAY_MS, HOUR_MS, ManualClock
from segflow.config import MlSettings
from segflow.log.sqlite import SqliteEventLog
from segflow.ml import cards
from segflow.ml.jobs import JobContext, run_job
from segflow.ml.registry import Registry
from segflow.ml.segments import cluster_name_rule, rules_naming_cluster, save_cluster_as_segment
from segflow.rules import compile_segments
from segflow.rules.sql.compiler import compile_members
from segflow.segments.store import DefinitionStore
from segflow.server.ml import MlService
from segflow.spec import Event, MembershipChange
from segflow.stream import Processor, ProfileReader, SqliteStateStore
from segflow.warehouse.loader import WarehouseLoader

from .conftest import generate_events

DAYS = 60
NOW = DAYS * DAY_MS
MODEL = "customer_segments"


@dataclass
class Stack:
    log: SqliteEventLog
    processor: Processor
    reader: ProfileReader
    loader: WarehouseLoader
    catalog: Path

    def settle(self) -> None:
        settle(self.processor, self.loader)

    def job(self, name: str, job: str | None = None) -> None:
        con = duckdb.connect(str(self.loader.path))
        try:
            ctx = JobContext(con=con, clock=ManualClock(NOW), sink=self.processor, threads=1)
            run_job(ctx, name, job)
        finally:
            con.close()
        self.settle()

    def registry(self) -> tuple[duckdb.DuckDBPyConnection, Registry]:
        con = duckdb.connect(str(self.loader.path))
        return con, Registry(con)

    def use_catalog(self) -> None:
        store = DefinitionStore(self.catalog)
        try:
            rules = {d.name: d.rule or "" for d in store.list("segment")}
        finally:
            store.close()
        self.processor.set_evaluator(compile_segments(rules))
        self.settle()

    def stream_members(self, segment: str) -> set[str]:
        ids = [str(r[0]) for r in self._sql("SELECT DISTINCT profile_id FROM profile_events")]
        return {p for p in ids if segment in (self.reader.get(p).members or [])}  # type: ignore[union-attr]

    def sql_members(self, rule: str) -> set[str]:
        return {str(r[0]) for r in self._sql(compile_members(rule, at_ms=NOW))}

    def cluster_of(self, cluster: int) -> set[str]:
        rows = self._sql(
            f"SELECT profile_id FROM profile_clusters WHERE model = '{MODEL}' AND cluster_id = {cluster}"
        )
        return {str(r[0]) for r in rows}

    def exits(self, segment: str) -> int:
        changes = self.processor.change_feed().read(0, 1_000_000)
        return sum(
            1
            for _, c in changes
            if isinstance(c, MembershipChange) and c.segment == segment and c.kind == "exited"
        )

    def _sql(self, sql: str) -> list[tuple[object, ...]]:
        con = duckdb.connect(str(self.loader.path))
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=4)
    clock = ManualClock(NOW)
    processor = Processor(log, SqliteStateStore(tmp_path / "state.sqlite"), clock=clock)
    reader = ProfileReader(processor.store.reader(), log)
    loader = WarehouseLoader(log, processor.change_feed(), tmp_path / "warehouse.duckdb", clock)
    table = generate_events(120, seed=3, days=DAYS).to_pylist()
    log.append(
        [
            Event(type="track", source_id="web", message_id=r["message_id"], event=r["event"],
                  timestamp_ms=r["timestamp_ms"], received_at_ms=r["timestamp_ms"],
                  user_id=r["profile_id"], properties=json.loads(r["properties"]))
            for r in table
        ]
    )  # fmt: skip
    stack = Stack(log, processor, reader, loader, tmp_path / "catalog.sqlite")
    stack.settle()
    yield stack
    processor.store.close()
    log.close()


def test_a_saved_cluster_keeps_its_members_after_rename_and_retrain(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.job(MODEL, "cluster")
    con, reg = stack.registry()
    names = reg.cluster_names(MODEL)
    cluster = max(names, key=lambda c: len(stack.cluster_of(c)))
    old_name = names[cluster][0]
    saved = save_cluster_as_segment(reg, stack.catalog, MODEL, cluster, "discovered")
    con.close()
    assert saved.rule == f"cluster id of model {MODEL} = {cluster}"
    by_name = cluster_name_rule(MODEL, old_name)  # what a person might write by hand
    store = DefinitionStore(stack.catalog)
    store.put("segment", "by_name", by_name)
    store.close()
    stack.use_catalog()

    members = stack.cluster_of(cluster)
    assert 0 < len(members) < 120
    assert stack.stream_members("discovered") == members == stack.sql_members(saved.rule or "")
    assert stack.stream_members("by_name") == members == stack.sql_members(by_name)

    # a rename: the saved segment keeps its members; the rule on the old name no longer matches
    con, reg = stack.registry()
    assert (
        reg.rename_cluster(MODEL, cluster, "Regulars", sink=stack.processor, now_ms=NOW) == old_name
    )
    con.close()
    assert rules_naming_cluster(stack.catalog, MODEL, old_name) == ["by_name"]
    stack.settle()
    assert stack.reader.get(next(iter(members))).clusters[MODEL] == "Regulars"  # type: ignore[union-attr]
    assert stack.stream_members("discovered") == members == stack.sql_members(saved.rule or "")
    assert stack.stream_members("by_name") == set() == stack.sql_members(by_name)

    # a retrain whose name generator words every cluster differently (as a new release might),
    # on the same data: the centroid matching gives the cluster its id back
    generated = cards.generated_name
    monkeypatch.setattr(
        cards, "generated_name", lambda d: "Renamed by the retrain: " + generated(d)
    )
    stack.job(MODEL, "cluster")
    con, reg = stack.registry()
    retrained = reg.cluster_names(MODEL)
    other = next(c for c in retrained if c != cluster)
    run = reg.last_run(MODEL, "cluster")
    con.close()
    assert retrained[cluster] == ("Regulars", True)  # the user's name survives
    assert retrained[other][0].startswith("Renamed by the retrain: ")
    assert run is not None and run.metrics["changed_share"] == 0.0
    assert stack.cluster_of(cluster) == members
    assert stack.stream_members("discovered") == members == stack.sql_members(saved.rule or "")
    assert stack.exits("discovered") == 0  # no member ever left on the way


def test_saving_another_clusters_segment_after_a_regenerated_name(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster that was never renamed: the retrain regenerates its name, its segment stays."""
    stack.job(MODEL, "cluster")
    con, reg = stack.registry()
    names = reg.cluster_names(MODEL)
    cluster = min(names)
    saved = save_cluster_as_segment(reg, stack.catalog, MODEL, cluster, "kept")
    con.close()
    stack.use_catalog()
    members = stack.cluster_of(cluster)
    assert members and stack.stream_members("kept") == members

    monkeypatch.setattr(cards, "generated_name", lambda d: f"Group of {len(d)} features")
    stack.job(MODEL, "cluster")
    con, reg = stack.registry()
    assert reg.cluster_names(MODEL)[cluster][0].startswith("Group of")
    con.close()
    assert stack.stream_members("kept") == members == stack.sql_members(saved.rule or "")
    assert stack.exits("kept") == 0


def test_serve_rescores_daily_and_a_crossed_threshold_changes_membership(stack: Stack) -> None:
    """The serve process's scheduler runs every default model; scores reach profile state."""
    store = DefinitionStore(stack.catalog)
    store.put("segment", "buyers", "score purchase_7d >= 0.5")
    store.put("segment", "valuable", "score ltv >= 1")
    store.close()
    stack.use_catalog()
    clock = ManualClock(NOW + 3 * HOUR_MS)  # after the default run hour (02:00 UTC)
    warehouse = lambda: duckdb.connect(str(stack.loader.path))  # noqa: E731
    service = MlService(warehouse, clock, sink=stack.processor, settings=MlSettings(threads=1))
    runs = {r.model: r for r in service.tick()}
    # churn (30-day windows) cannot train on 60 days of history: recorded, the others still run
    assert {"purchase_7d", "customer_segments", "ltv"} <= set(runs) and "churn" not in runs
    con = warehouse()
    assert Registry(con).runs("churn", 1)[0].status == "failed"
    con.close()
    assert service.tick() == []  # nothing is due again the same day
    stack.settle()
    for segment, rule in (("buyers", "score purchase_7d >= 0.5"), ("valuable", "score ltv >= 1")):
        members = stack.stream_members(segment)
        assert members and members == stack.sql_members(rule), segment
    entered = [
        c for _, c in stack.processor.change_feed().read(0, 1_000_000)
        if isinstance(c, MembershipChange) and c.segment == "buyers" and c.kind == "entered"
    ]  # fmt: skip
    assert len(entered) == len(stack.stream_members("buyers"))  # no event needed: the scores
    clock.set(NOW + DAY_MS + 3 * HOUR_MS)  # the next day: rescored
    assert "purchase_7d" in {r.model for r in service.tick()}


def test_percentile_segments_agree_in_the_stream_and_in_sql(stack: Stack) -> None:
    """``score M in top P%``: the scoring run's ranks reach the processor and the warehouse,
    and both evaluators select the profiles with at most P% of the run scored as high as they
    are (themselves included)."""
    stack.job("ltv")
    store = DefinitionStore(stack.catalog)
    rules = {
        "top_value": "score ltv in top 10%",
        "bottom_value": "score ltv in bottom 25 percent",
        "not_top_alive": "not score p_alive in top 50%",
    }
    for name, rule in rules.items():
        store.put("segment", name, rule)
    store.close()
    stack.use_catalog()
    scores = {str(p): float(s) for p, s in stack._sql("SELECT profile_id, score FROM profile_scores WHERE model = 'ltv'")}  # fmt: skip
    n = len(scores)
    assert n > 20
    top = {p for p, s in scores.items() if sum(o >= s for o in scores.values()) <= 0.10 * n}
    bottom = {p for p, s in scores.items() if sum(o <= s for o in scores.values()) <= 0.25 * n}
    assert 0 < len(top) <= 0.10 * n and 0 < len(bottom) <= 0.25 * n
    assert stack.stream_members("top_value") == top == stack.sql_members(rules["top_value"])
    assert (
        stack.stream_members("bottom_value") == bottom == stack.sql_members(rules["bottom_value"])
    )
    assert stack.stream_members("not_top_alive") == stack.sql_members(rules["not_top_alive"])
