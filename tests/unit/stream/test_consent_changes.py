"""The processor tells downstream when a profile's ``consent`` trait changes (activation's
consent-aware destinations act on it), and only then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segflow.clock import ManualClock
from segflow.spec import ConsentChanged, IdentityLinked
from segflow.stream import MemoryStateStore, Processor

T0 = 1_700_000_000_000


def consent_changes(log: Any) -> list[tuple[Any, int]]:
    proc = Processor(log, MemoryStateStore(), clock=ManualClock(T0))
    while proc.run_once(50) > 0:
        pass
    changes = [c for _, c in proc.change_feed().read(0)]
    assert all(not isinstance(c, ConsentChanged) or c.profile_id for c in changes)
    return [(c.consent, c.at_ms) for c in changes if isinstance(c, ConsentChanged)]


def test_consent_changes_are_emitted_when_the_trait_changes(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    denied, granted = {"advertising": False}, {"advertising": True}
    memory_log.append(
        [
            make_event("identify", T0, user_id="u1", traits={"plan": "pro"}),  # no consent
            make_event("identify", T0 + 1, user_id="u1", traits={"consent": granted}),
            make_event("identify", T0 + 2, user_id="u1", traits={"consent": granted}),  # same
            make_event("track", T0 + 3, user_id="u1", event="Viewed"),
            make_event("identify", T0 + 4, user_id="u1", traits={"consent": denied}),
        ]
    )
    assert consent_changes(memory_log) == [(granted, T0 + 1), (denied, T0 + 4)]


def test_a_merge_that_brings_consent_is_a_change_of_the_survivor(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    log = type(memory_log)(partitions=1)  # in this order, so the alias merges two profiles
    log.append(
        [
            make_event("identify", T0, user_id="u1", traits={"plan": "pro"}),
            make_event(
                "identify", T0 + 1, anonymous_id="a1", traits={"consent": {"advertising": False}}
            ),
            make_event("alias", T0 + 2, user_id="u1", previous_id="a1"),
        ]
    )
    changes = consent_changes(log)
    assert [at for _, at in changes] == [T0 + 1, T0 + 2]  # a1's own, then u1's by the merge


def test_sequence_is_shared_with_the_profiles_other_changes(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    memory_log.append(
        [make_event("identify", T0, user_id="u1", traits={"consent": {"analytics": True}})]
    )
    proc = Processor(memory_log, MemoryStateStore(), clock=ManualClock(T0))
    proc.run_once(50)
    changes = [c for _, c in proc.change_feed().read(0)]
    linked = [c.sequence for c in changes if isinstance(c, IdentityLinked)]
    consent = [c.sequence for c in changes if isinstance(c, ConsentChanged)]
    assert consent == [max(linked) + 1]
