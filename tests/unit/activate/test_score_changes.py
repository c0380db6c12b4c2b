"""Destinations subscribed to ``score:MODEL`` receive the model's live score changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.activate.harness import Harness, consent, mc, ok

from segflow.activate.exceptions import InvalidDestinationError
from segflow.spec import ScoreChanged


def sc(pid: str, old: float | None, new: float, seq: int, model: str = "churn") -> ScoreChanged:
    return ScoreChanged(profile_id=pid, model=model, old=old, new=new, at_ms=seq, sequence=seq)


def test_a_score_subscription_receives_the_models_score_changes_in_order(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    sub, queued = h.service.subscribe("d", "score:churn")
    assert sub.kinds == ("score_changed",) and queued == 0
    h.service.subscribe("d", "vip")
    h.feed.add(sc("p1", None, 0.31, 1), sc("p1", 0.31, 0.72, 2), mc("p1", "entered", 3),
               sc("p1", 0.72, 0.9, 4, model="other"))  # fmt: skip
    h.passes(5)
    bodies = h.ok_bodies()
    assert [b["type"] for b in bodies] == ["score.changed", "score.changed", "segment.entered"]
    first = bodies[0]["data"]
    assert (first["model"], first["old"], first["new"], first["sequence"]) == (
        "churn",
        None,
        0.31,
        1,
    )
    assert bodies[1]["data"]["old"] == 0.31 and bodies[1]["data"]["new"] == 0.72
    assert len({r.headers["webhook-id"] for r in h.requests}) == 3


def test_segment_shaped_destinations_get_a_track_or_a_trait(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    for fmt in ("segment_track", "segment_identify"):
        h.service.create_destination(
            {"name": fmt, "url": "https://hooks.example/x", "payload_format": fmt}
        )
        h.service.subscribe(fmt, "score:churn")
    h.feed.add(sc("p1", None, 0.4, 1))
    h.passes(3)
    by_type = {b["type"]: b for b in h.ok_bodies()}
    assert by_type["track"]["event"] == "Score Changed"
    assert by_type["track"]["properties"] == {"model": "churn", "old": None, "new": 0.4}
    assert by_type["identify"]["traits"] == {"churn_score": 0.4}


def test_score_changes_are_not_sent_while_consent_is_denied(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    h.service.create_destination(
        {"name": "d", "url": "https://hooks.example/x", "consent_purpose": "advertising"}
    )
    h.service.subscribe("d", "score:churn")
    h.feed.add(consent("p1", {"advertising": False}, 1), sc("p1", None, 0.5, 2),
               consent("p1", {"advertising": True}, 3), sc("p1", 0.5, 0.8, 4))  # fmt: skip
    h.passes(4)
    assert [b["data"]["new"] for b in h.ok_bodies()] == [0.8]


def test_a_score_subscription_takes_score_changed_only_and_no_initial_sync(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    with pytest.raises(InvalidDestinationError) as err:
        h.service.subscribe("d", "score:churn", kinds=("entered",))
    assert err.value.field == "kinds"
    with pytest.raises(InvalidDestinationError) as err:
        h.service.subscribe("d", "score:churn", initial_sync=True)
    assert err.value.field == "initial_sync"
    with pytest.raises(InvalidDestinationError) as err:
        h.service.subscribe("d", "vip", kinds=("score_changed",))
    assert err.value.field == "kinds"
