"""Properties of the processor over generated streams: replay and batch boundaries change nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.state import changes_apart, general_path

from segflow.clock import ManualClock
from segflow.identity import IdentityRules
from segflow.log.base import Record
from segflow.spec import Event
from segflow.stream import MemoryStateStore, Processor, SqliteStateStore
from segflow.stream.batch import WorkingSet
from segflow.stream.state.rocksdb import RocksStateStore

T0 = 1_700_000_000_000


class OnePartitionLog:
    partitions = 1

    def __init__(self, events: list[Event]) -> None:
        self.records = [Record(0, i, e) for i, e in enumerate(events)]

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self.records[offset : offset + max_records]


ids = st.sampled_from(["a", "b", "c", "null", ""])
users = st.sampled_from([None, "u1", "u2", "u3"])
emails = st.sampled_from([None, "x@y.z", "X@Y.Z ", "w@y.z"])


@st.composite
def streams(draw: Any) -> list[Event]:
    n = draw(st.integers(1, 30))
    out = []
    for i in range(n):
        anon, user, email = draw(ids), draw(users), draw(emails)
        kind = draw(st.sampled_from(["track", "identify", "alias"]))
        traits = {"email": email, "v": i} if email and kind == "identify" else {}
        ctx = {"traits": {"email": email}} if email and kind == "track" else {}
        ts = T0 + draw(st.integers(0, 50))
        out.append(Event(type=kind, message_id=f"m{i}", source_id="s", timestamp_ms=ts, received_at_ms=ts,
                         anonymous_id=anon or None, user_id=user, traits=traits, context=ctx, event="E",
                         previous_id=draw(ids) if kind == "alias" else None))  # fmt: skip
    return out


def dump(store: Any) -> dict[str, Any]:
    reader = store.reader()
    return changes_apart(
        {
            ns: reader.scan(ns, "", "\U0010ffff")
            for ns in ("profile", "owner", "alias", "timeline", "merge", "conflict", "outbox")
        }
    )


def run(events: list[Event], store: Any, batch: int, *, working: bool = False) -> dict[str, Any]:
    proc = Processor(OnePartitionLog(events), store, clock=ManualClock(T0))
    # a working set as on a store only this process writes (small: evictions happen too)
    proc.working = WorkingSet(max_profiles=3, max_owners=5) if working else None
    while proc.run_once(batch) > 0:
        pass
    return dump(store)


@settings(max_examples=60, deadline=None)
@given(streams(), st.integers(1, 7))
def test_replay_and_batch_size_give_the_same_state(events: list[Event], batch: int) -> None:
    reference = run(events, MemoryStateStore(), 1000)
    assert run(events, MemoryStateStore(), 1000) == reference
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStateStore(Path(tmp) / "state.sqlite", synchronous="OFF")
        try:
            assert run(events, store, batch) == reference
        finally:
            store.close()
        rocks = RocksStateStore(Path(tmp) / "state", sync=False)
        try:
            assert run(events, rocks, batch) == reference
        finally:
            rocks.close()


@settings(max_examples=60, deadline=None)
@given(streams(), st.integers(1, 7))
def test_the_working_set_changes_nothing(events: list[Event], batch: int) -> None:
    """Profiles and owners kept in memory between batches (and dropped when it is full) give
    the state the store alone gives."""
    assert run(events, MemoryStateStore(), batch, working=True) == run(
        events, MemoryStateStore(), batch
    )


@settings(max_examples=60, deadline=None)
@given(streams(), st.integers(1, 7))
def test_the_inline_paths_equal_the_general_one(events: list[Event], batch: int) -> None:
    """``attribute_all`` handles a returning person and a newcomer inline; sending every event
    through ``attribute`` instead gives the same state."""
    store = MemoryStateStore()
    proc = Processor(OnePartitionLog(events), store, clock=ManualClock(T0))
    general_path(proc.handler)
    while proc.run_once(batch) > 0:
        pass
    assert dump(store) == run(events, MemoryStateStore(), batch)


NO_LIMITS = IdentityRules(
    limits={}, default_limit=10_000, max_identifiers=10_000, max_merges=10_000
)


def grouping(store: Any) -> frozenset[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for key, pid in store.reader().scan("owner", "", "\U0010ffff"):
        groups.setdefault(pid.decode(), set()).add(key)
    profiles = {k for k, _ in store.reader().scan("profile", "", "\U0010ffff")}
    assert set(groups) == profiles  # every owner is a live profile, every profile owns something
    return frozenset(frozenset(g) for g in groups.values())


@settings(max_examples=60, deadline=None)
@given(streams(), st.randoms(use_true_random=False))
def test_without_limits_the_processor_grouping_ignores_arrival_order(
    events: list[Event], rnd: Any
) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    groupings = []
    for stream in (events, shuffled):
        store = MemoryStateStore()
        proc = Processor(OnePartitionLog(stream), store, clock=ManualClock(T0), rules=NO_LIMITS)
        while proc.run_once(3) > 0:
            pass
        groupings.append(grouping(store))
    assert groupings[0] == groupings[1]
