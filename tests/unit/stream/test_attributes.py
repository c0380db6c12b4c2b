"""ML scores and clusters applied to profile state: re-evaluation, merges, unknown ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segflow.clock import HOUR_MS, ManualClock
from segflow.rules import compile_segments
from segflow.spec import MembershipChange
from segflow.stream import MemoryStateStore, Processor, ProfileReader

T0 = 1_700_000_000_000


def _changes(proc: Processor) -> list[tuple[str, str, str]]:
    return [
        (c.profile_id, c.segment, c.kind)
        for _, c in proc.change_feed().read(0)
        if isinstance(c, MembershipChange)
    ]


def test_scores_enter_and_exit_segments_without_events(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    program = compile_segments(
        {"at_risk": "score churn > 0.7", "explorers": 'cluster of model kmeans = "explorers"'}
    )
    proc = Processor(memory_log, MemoryStateStore(), evaluator=program, clock=ManualClock(T0))
    memory_log.append([make_event("track", ts=T0, user_id="u1", event="Signed Up")])
    proc.run_once()
    reader = ProfileReader(proc.store.reader(), memory_log)
    pid = reader.lookup("user_id", "u1").profile_id  # type: ignore[union-attr]
    assert _changes(proc) == []

    proc.put_scores("churn", [(pid, 0.9), ("p_gone", 0.99)], at_ms=T0)
    proc.put_clusters("kmeans", [(pid, "explorers", 4)], at_ms=T0)
    assert proc.run_once() == 0  # no events, but the attributes are applied
    profile = reader.lookup("user_id", "u1")
    assert profile is not None
    assert profile.scores == {"churn": 0.9} and profile.clusters == {"kmeans": "explorers"}
    assert profile.cluster_ids == {"kmeans": 4}
    assert sorted(_changes(proc)) == [(pid, "at_risk", "entered"), (pid, "explorers", "entered")]

    proc.put_scores("churn", [(pid, 0.2)], at_ms=T0 + 1)
    proc.run_once()
    assert _changes(proc)[-1] == (pid, "at_risk", "exited")
    assert len(proc.attributes) == 0


def test_scores_for_an_absorbed_profile_reach_its_survivor(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    proc = Processor(
        memory_log,
        MemoryStateStore(),
        evaluator=compile_segments({"hot": "score buy > 0.5"}),
        clock=ManualClock(T0),
    )
    memory_log.append([make_event("track", ts=T0, user_id="u1", event="Viewed")])
    memory_log.append([make_event("track", ts=T0 + 1, anonymous_id="a1", event="Viewed")])
    proc.run_once()
    reader = ProfileReader(proc.store.reader(), memory_log)
    anon = reader.lookup("anonymous_id", "a1").profile_id  # type: ignore[union-attr]
    known = reader.lookup("user_id", "u1").profile_id  # type: ignore[union-attr]
    assert anon != known
    memory_log.append([make_event("identify", ts=T0 + 2, user_id="u1", anonymous_id="a1")])
    proc.run_once()
    absorbed = reader.get(anon)  # the reader follows the merge alias
    assert absorbed is not None and absorbed.profile_id == known and absorbed.members == []
    proc.put_scores("buy", [(anon, 0.8)], at_ms=T0 + 3)  # the job read the warehouse before
    proc.run_once()
    now = reader.lookup("user_id", "u1")
    assert now is not None and now.profile_id == known
    assert now.scores == {"buy": 0.8} and now.members == ["hot"]


def test_freshness_is_measured_from_acknowledgement_to_commit(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    clock = ManualClock(T0)
    proc = Processor(
        memory_log,
        MemoryStateStore(),
        evaluator=compile_segments({"recent": 'did "A" in last 1 hour'}),
        clock=clock,
    )
    proc.wall_ms = lambda: T0 + 40  # committed 40 ms after the event was acknowledged
    memory_log.append([make_event("track", ts=T0, user_id="u1", event="A")])
    proc.run_once()
    assert proc.freshness.summary()["recent"] == {
        "count": 1, "p50_ms": 40.0, "p99_ms": 40.0, "max_ms": 40
    }  # fmt: skip
    clock.set(T0 + HOUR_MS + 300)  # the timer was due at T0 + 1 h; it fires 300 ms late
    proc.wall_ms = lambda: T0 + HOUR_MS + 310
    proc.run_once()
    summary = proc.freshness.summary()["recent"]
    assert summary["timers"]["max_ms"] == 300  # fired 300 ms after due, apart from events
    assert summary["max_ms"] == 40
