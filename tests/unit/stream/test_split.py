from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from segflow.clock import ManualClock
from segflow.errors import NotFoundError, ValidationError
from segflow.spec import IdentityLinked, MembershipChange
from segflow.stream import Evaluation, MemoryStateStore, Processor, ProfileReader

T0 = 1_700_000_000_000


class CountEvaluator:
    """'busy' while the profile has 3+ events (rule state = the count)."""

    def on_event(self, profile: Any, state: bytes | None, event: Any, now_ms: int) -> Any:
        n = int(state or b"0") + 1
        return Evaluation(str(n).encode(), frozenset({"busy"}) if n >= 3 else frozenset(), {"n": n})

    def on_time(self, profile: Any, state: bytes | None, now_ms: int) -> Any:
        n = int(state or b"0")
        return Evaluation(state, frozenset({"busy"}) if n >= 3 else frozenset(), {"n": n})

    def can_merge(self, survivor: bytes | None, absorbed: bytes | None) -> bool:
        return True

    def merge_states(self, survivor: bytes | None, absorbed: bytes | None) -> bytes | None:
        return str(int(survivor or b"0") + int(absorbed or b"0")).encode()


def build(memory_log: Any, make_event: Callable[..., Any]) -> tuple[Processor, ProfileReader]:
    memory_log.append(
        [
            make_event("track", T0, anonymous_id="phone", event="A"),
            make_event(
                "identify", T0 + 1, anonymous_id="phone", user_id="u1", traits={"email": "e@x.io"}
            ),
            make_event(
                "track",
                T0 + 2,
                anonymous_id="laptop",
                event="B",
                context={"traits": {"email": "e@x.io"}},
            ),
            make_event("track", T0 + 3, anonymous_id="laptop", event="C"),
        ]
    )
    store = MemoryStateStore()
    proc = Processor(memory_log, store, clock=ManualClock(T0 + 10), evaluator=CountEvaluator())
    while proc.run_once() > 0:
        pass
    return proc, ProfileReader(store.reader(), memory_log)


def test_split_rebuilds_both_sides_and_prevents_remerge(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    proc, reader = build(memory_log, make_event)
    before = reader.lookup("user_id", "u1")
    assert before is not None and before.members == ["busy"]
    assert reader.resolve("anonymous_id", "laptop") == before.profile_id
    cursor = max(seq for seq, _ in proc.change_feed().read(0))

    result = proc.split(before.profile_id, ["anonymous_id:laptop", "email:e@x.io"])
    kept, off = reader.get(result.kept), reader.get(result.split_off)
    assert kept is not None and off is not None and kept.profile_id == before.profile_id
    assert (result.kept_events, result.split_events) == (2, 2)
    assert kept.event_counts == {"A": 1, "identify": 1} and off.event_counts == {"B": 1, "C": 1}
    assert reader.resolve("anonymous_id", "laptop") == off.profile_id
    assert [e.event for e in reader.events(off)] == ["C", "B"]
    assert kept.members == [] and kept.computed_traits == {"n": 2}
    changes = [c for _, c in proc.change_feed().read(cursor)]
    assert [(c.profile_id, c.kind) for c in changes if isinstance(c, MembershipChange)] == [
        (kept.profile_id, "exited")
    ]
    assert {(c.profile_id, c.id_value) for c in changes if isinstance(c, IdentityLinked)} == {
        (off.profile_id, "laptop"),
        (off.profile_id, "e@x.io"),
    }
    assert [m.rule for m in reader.merges(kept)] == ["split"]

    memory_log.append(
        [make_event("track", T0 + 20, anonymous_id="laptop", user_id="u1", event="D")]
    )
    proc.run_once()
    assert reader.resolve("anonymous_id", "laptop") == off.profile_id
    kept = reader.get(kept.profile_id)
    assert kept is not None and kept.event_counts["D"] == 1
    assert [c.rule for c in reader.conflicts(kept)] == ["split"]


def test_split_refuses_bad_requests(memory_log: Any, make_event: Callable[..., Any]) -> None:
    proc, reader = build(memory_log, make_event)
    profile = reader.lookup("user_id", "u1")
    assert profile is not None
    with pytest.raises(ValidationError):
        proc.split(profile.profile_id, ["anonymous_id:nope"])
    with pytest.raises(ValidationError):
        proc.split(profile.profile_id, profile.identity_keys())
    with pytest.raises(NotFoundError):
        proc.split("p_missing", ["anonymous_id:laptop"])
