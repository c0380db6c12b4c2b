from __future__ import annotations

from typing import Any

from segflow.profiles import Profile, apply_event, decode_profile, encode_profile, merge_into
from segflow.spec import Event


def ev(type: str, ts: int, mid: str, **fields: Any) -> Event:
    return Event(
        type=type, message_id=mid, source_id="s", timestamp_ms=ts, received_at_ms=ts, **fields
    )


def test_traits_history_records_changes_only() -> None:
    p = Profile(profile_id="p", created_ms=0)
    apply_event(p, ev("identify", 10, "m1", traits={"plan": "free"}))
    apply_event(p, ev("identify", 20, "m2", traits={"plan": "free"}))
    apply_event(p, ev("identify", 30, "m3", traits={"plan": "pro"}))
    assert [(c.key, c.value, c.at_ms) for c in p.trait_history] == [
        ("plan", "free", 10),
        ("plan", "pro", 30),
    ]


def test_group_traits_kept_per_group() -> None:
    p = Profile(profile_id="p", created_ms=0)
    apply_event(p, ev("group", 10, "m1", group_id="acme", traits={"seats": 5}))
    apply_event(p, ev("group", 5, "m2", group_id="acme", traits={"seats": 1, "tier": "gold"}))
    assert p.group_traits == {"acme": {"seats": 5, "tier": "gold"}}
    assert p.traits == {}


def test_track_counts_by_name() -> None:
    p = Profile(profile_id="p", created_ms=0)
    for i, name in enumerate(["A", "B", "A"]):
        apply_event(p, ev("track", i, f"m{i}", event=name))
    apply_event(p, ev("page", 9, "m9", name="Home"))
    assert p.event_counts == {"A": 2, "B": 1, "page": 1}
    assert (p.first_seen_ms, p.last_seen_ms) == (0, 9)


def test_merge_combines_by_time_and_sums() -> None:
    a = Profile(profile_id="a", created_ms=0)
    b = Profile(profile_id="b", created_ms=5)
    a.add_identity("anonymous_id", "x", 0)
    b.add_identity("user_id", "u", 5)
    b.add_identity("anonymous_id", "x", 3)
    apply_event(a, ev("identify", 10, "m1", traits={"plan": "free", "city": "Oslo"}))
    apply_event(b, ev("identify", 20, "m2", traits={"plan": "pro"}))
    apply_event(b, ev("track", 2, "m3", event="A"))
    a.scores, b.scores = {"churn": 0.1}, {"churn": 0.9, "ltv": 3.0}
    merge_into(a, b)
    assert a.traits == {"plan": "pro", "city": "Oslo"}
    assert a.event_counts == {"identify": 2, "A": 1}
    assert (a.first_seen_ms, a.last_seen_ms) == (2, 20)
    assert {(e.type, e.value, e.first_seen_ms) for e in a.identities} == {
        ("anonymous_id", "x", 0),
        ("user_id", "u", 5),
    }
    assert a.scores == {"churn": 0.1, "ltv": 3.0}
    assert a.absorbed == ["b"] and a.merge_count == 1
    assert [c.at_ms for c in a.trait_history] == [10, 10, 20]
    assert a.user_id == "u"


def test_roundtrip_encoding() -> None:
    p = Profile(profile_id="p", created_ms=0, rule_state=b"\x00\x01", members=["vip"])
    apply_event(p, ev("identify", 1, "m", traits={"n": [1, {"x": None}]}))
    assert decode_profile(encode_profile(p)) == p


def test_profiles_and_their_entries_are_not_tracked_by_the_cyclic_collector() -> None:
    """They never form cycles (their values come from decoded events), so they stay out of
    the collector's generations: fewer objects for it to walk, as the processor creates one
    profile per newcomer (docs/engine.md, "The garbage collector")."""
    import gc

    from segflow.profiles.profile import IdentityEntry, TraitChange

    profile = Profile(profile_id="p1", created_ms=1)
    profile.add_identity("user_id", "u1", 1)
    entries = [*profile.identities, TraitChange("plan", "pro", 1, "m1")]
    assert not gc.is_tracked(profile)
    assert not any(gc.is_tracked(e) for e in entries)
    assert all(isinstance(e, IdentityEntry | TraitChange) for e in entries)
    assert decode_profile(encode_profile(profile)) == profile
