"""Live scoring in the processor: exports checked on arrival, values stored where batch runs
store them, rules re-evaluated in the transaction of the event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segflow.clock import ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.rules import compile_segments
from segflow.spec import Event, MembershipChange, ScoreChanged
from segflow.stream import Processor, ProfileReader, SqliteStateStore
from segflow.stream.live import LiveModel

TRAIT = "ml.m.orders"


def export(**changes: Any) -> dict[str, Any]:
    base = {"model": "m", "kind": "logistic", "run_id": "r", "features": {"orders": 'count("Order Completed")'},
            "log1p": [False], "mean": [0.0], "scale": [1.0], "coefficients": [2.0], "intercept": -3.0,
            "calibration": [{"method": "sigmoid", "a": -1.0, "b": 0.0}], "ranked_scores": [0.1, 0.5, 0.9]}  # fmt: skip
    return {**base, **changes}


def test_an_unusable_export_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="do not match its features"):
        LiveModel(export(mean=[0.0, 1.0]))
    with pytest.raises(ValueError, match="is not scored live"):
        LiveModel(export(kind="trees"))
    with pytest.raises(ValueError, match="centroids do not match"):
        LiveModel(export(kind="kmeans", centroids=[[0.0, 1.0]], cluster_ids=[0], names={"0": "a"}))


def test_a_score_rule_changes_in_the_batch_of_the_event_that_moved_the_score(
    tmp_path: Path,
) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=1)
    processor = Processor(log, SqliteStateStore(tmp_path / "state.sqlite"), clock=ManualClock(100))
    try:
        processor.put_live_model(export())
        rules = {"likely": "score m >= 0.6", "top": "score m in top 40%"}
        processor.set_evaluator(compile_segments(rules, processor.live.traits()))

        def order(i: int) -> Event:
            return Event(type="track", message_id=f"o{i}", source_id="s", timestamp_ms=i,
                         received_at_ms=i, user_id="u1", event="Order Completed")  # fmt: skip

        log.append([order(1)])
        assert processor.run_once() == 1
        reader = ProfileReader(processor.store.reader(), log)
        first = reader.lookup("user_id", "u1")
        assert first is not None
        assert first.computed_traits[TRAIT] == 1
        assert abs(first.scores["m"] - 1 / (1 + 2.718281828459045)) < 1e-12  # sigmoid(-1)
        assert first.scores["m:top"] == 2 / 3 and first.members == []
        log.append([order(2)])
        assert processor.run_once() == 1
        second = reader.lookup("user_id", "u1")
        assert second is not None and second.scores["m"] > 0.7
        assert second.scores["m:top"] == 1 / 3
        assert second.members == ["likely", "top"]
        feed = [c for _, c in processor.change_feed().read(0, 100)]
        moved = [(c.model, c.old, c.new) for c in feed if isinstance(c, ScoreChanged)]
        assert moved == [
            ("m", None, first.scores["m"]),
            ("m", first.scores["m"], second.scores["m"]),
        ]
        entered = [c for c in feed if isinstance(c, MembershipChange)]
        assert [(c.segment, c.kind) for c in entered] == [("likely", "entered"), ("top", "entered")]
        assert all(c.sequence > feed[-3].sequence for c in entered)  # after the score moved

        processor.live.precision = 0  # 0.73 -> 0.88 rounds to 1 both times: not in the feed
        log.append([order(3)])
        assert processor.run_once() == 1
        feed = [c for _, c in processor.change_feed().read(0, 100)]
        assert sum(isinstance(c, ScoreChanged) for c in feed) == 2
        reader.close()
    finally:
        processor.store.close()
        log.close()


def test_a_model_that_fails_is_dropped_and_the_stream_goes_on(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=1)
    processor = Processor(log, SqliteStateStore(tmp_path / "state.sqlite"), clock=ManualClock(100))
    try:
        processor.put_live_model(export())
        processor.set_evaluator(compile_segments({"any": "did any event"}))
        model = processor.live.models()["m"]
        model.calibration = [{"method": "isotonic"}]  # broken after its checks: no table
        log.append([Event(type="track", message_id="o1", source_id="s", timestamp_ms=1,
                          received_at_ms=1, user_id="u1", event="Order Completed")])  # fmt: skip
        assert processor.run_once() == 1
        assert "m" in processor.live.failed
        reader = ProfileReader(processor.store.reader(), log)
        profile = reader.lookup("user_id", "u1")
        assert profile is not None and profile.members == ["any"] and "m" not in profile.scores
        reader.close()
    finally:
        processor.store.close()
        log.close()
