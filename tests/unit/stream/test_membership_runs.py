"""A profile's membership changes of one evaluation go to the outbox as one run
(``Batch.change_memberships``, ``outbox.MembershipRun``): the feed reads the same changes,
numbered without gaps, with per-profile sequences, as one change each would give."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from segflow.clock import ManualClock
from segflow.profiles import Profile
from segflow.rules import compile_segments
from segflow.spec import IdentityLinked, MembershipChange, ProfileMerged
from segflow.stream import MemoryStateStore, Processor, keys
from segflow.stream.batch import Batch
from segflow.stream.erase import erase_profiles
from segflow.stream.outbox import MembershipRun, StateChangeFeed, decode_row, encode_changes
from segflow.stream.state.rocksdb import RocksStateStore

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    found = MemoryStateStore() if request.param == "memory" else RocksStateStore(tmp_path / "s")
    yield found
    found.close()


def commit(batch: Batch) -> None:
    batch.flush()
    batch.tx.commit()


def feed(store: Any) -> list[tuple[int, Any]]:
    return StateChangeFeed(store.reader()).read(0, limit=10_000)


def members(store: Any) -> list[str]:
    return [key for key, _ in store.reader().scan(keys.MEMBER, "", "\U0010ffff")]


def what(change: Any) -> tuple[Any, ...]:
    return (change.profile_id, change.segment, change.kind, change.sequence)


def test_a_run_is_numbered_in_the_feed_between_single_changes(store: Any) -> None:
    batch = Batch(store.begin_global(), now_ms=T0)
    p, q = Profile(profile_id="p", created_ms=0), Profile(profile_id="q", created_ms=0)
    batch.change_membership(p, "a", "entered", T0 - 5)
    batch.change_memberships(q, ["b", "c"], [], T0 - 4)
    batch.change_memberships(p, ["d"], ["a"], T0 - 3)
    assert batch.outbox_seq == 5  # the last change's number
    commit(batch)
    changes = feed(store)
    assert [s for s, _ in changes] == [1, 2, 3, 4, 5]
    assert [what(c) for _, c in changes] == [
        ("p", "a", "entered", 1),
        ("q", "b", "entered", 1),
        ("q", "c", "entered", 2),
        ("p", "d", "entered", 2),
        ("p", "a", "exited", 3),
    ]
    assert all(type(c) is MembershipChange for _, c in changes)
    assert [c.at_ms for _, c in changes] == [T0 - 5, T0 - 4, T0 - 4, T0 - 3, T0 - 3]
    assert {c.recorded_at_ms for _, c in changes} == {T0}
    assert members(store) == ["b|q", "c|q", "d|p"]
    assert (p.sequence, q.sequence, p.recorded_ms) == (3, 2, T0)
    assert StateChangeFeed(store.reader()).last_seq() == 5

    batch = Batch(store.begin_global(), now_ms=T0 + 1)  # the next batch goes on from 5
    batch.change_memberships(q, [], ["b", "c"], T0)
    commit(batch)
    assert [(s, what(c)) for s, c in feed(store)[5:]] == [
        (6, ("q", "b", "exited", 3)),
        (7, ("q", "c", "exited", 4)),
    ]
    assert members(store) == ["d|p"]


def test_a_run_is_never_recorded_before_the_profiles_previous_change() -> None:
    profile = Profile(profile_id="p", created_ms=0, recorded_ms=T0)
    batch = Batch(MemoryStateStore().begin_global(), now_ms=T0 - 60_000)  # a clock stepped back
    batch.change_memberships(profile, ["s"], ["t"], T0 - HOUR_MS)
    [run] = batch.changes
    assert [(c.at_ms, c.recorded_at_ms) for c in run.changes()] == [(T0 - HOUR_MS, T0)] * 2
    assert profile.recorded_ms == T0


def test_an_optimistic_batch_numbers_its_runs_at_commit(tmp_path: Path) -> None:
    from segflow.stream import SqliteStateStore

    store = SqliteStateStore(tmp_path / "state.sqlite")
    tx = store.begin_optimistic()
    batch = Batch(tx, now_ms=T0)
    batch.change_memberships(Profile(profile_id="p", created_ms=0), ["a", "b"], [], T0)
    batch.emit(ProfileMerged(survivor="p", absorbed="x", reason="r", at_ms=T0, sequence=3))
    commit(batch)
    assert [(s, type(c).__name__) for s, c in feed(store)] == [
        (1, "MembershipChange"),
        (2, "MembershipChange"),
        (3, "ProfileMerged"),
    ]
    store.close()


def test_rows_written_before_runs_are_read_as_they_were() -> None:
    merged = ProfileMerged(survivor="a", absorbed="b", reason="r", at_ms=1, sequence=1)
    change = MembershipChange(profile_id="a", segment="s", kind="entered", at_ms=1, sequence=2)
    encoder = msgspec.msgpack.Encoder()
    format_1 = encoder.encode([merged, None, change])
    assert decode_row(format_1) == [merged, None, change]
    assert decode_row(encoder.encode(change)) == [change]  # a row of one change
    store = MemoryStateStore()
    tx = store.begin_global()
    tx.set(keys.OUTBOX, keys.seq_key(1), format_1)
    tx.set(keys.OUTBOX, keys.seq_key(4), encoder.encode(change))
    run = MembershipRun("a", 2, 3, 3, ["t"], ["s"])
    tx.set(keys.OUTBOX, keys.seq_key(5), encode_changes([run, None]))
    tx.commit()
    assert [(s, what(c)) for s, c in feed(store) if type(c) is MembershipChange] == [
        (3, ("a", "s", "entered", 2)),
        (4, ("a", "s", "entered", 2)),
        (5, ("a", "t", "entered", 3)),
        (6, ("a", "s", "exited", 4)),
    ]
    assert StateChangeFeed(store.reader()).last_seq() == 7


def test_erasing_a_profile_blanks_its_runs_and_keeps_the_others_numbers(store: Any) -> None:
    batch = Batch(store.begin_global(), now_ms=T0)
    p, q = Profile(profile_id="p", created_ms=0), Profile(profile_id="q", created_ms=0)
    batch.change_memberships(p, ["a", "b"], [], T0)
    batch.change_memberships(q, ["a"], [], T0)
    batch.put(p)
    batch.put(q)
    commit(batch)
    batch = Batch(store.begin_global(), now_ms=T0)
    assert erase_profiles(batch, ["p"], [])["changes"] >= 2
    commit(batch)
    assert [(s, what(c)) for s, c in feed(store) if c.profile_id == "q"] == [
        (3, ("q", "a", "entered", 1))
    ]
    assert all(c.profile_id != "p" for _, c in feed(store))


RULES = {
    "viewer": 'did "Product Viewed"',
    "buyer": 'did "Order Completed"',
    "browsing": 'did "Product Viewed" in last 1 hour',
}


def processor(memory_log: Any, store: Any, clock: ManualClock) -> Processor:
    return Processor(memory_log, store, compile_segments(RULES), clock)


def test_an_exit_and_a_reentry_in_one_batch_come_out_in_order_and_keep_the_row(
    store: Any,
) -> None:
    p = Profile(profile_id="p", created_ms=0)
    batch = Batch(store.begin_global(), now_ms=T0)
    batch.change_memberships(p, ["a", "b"], [], T0 - 3)
    commit(batch)
    batch = Batch(store.begin_global(), now_ms=T0 + 1)
    batch.change_memberships(p, [], ["a"], T0 - 2)  # e.g. a timer, then an event
    batch.change_memberships(p, ["a"], ["b"], T0 - 1)
    commit(batch)
    assert [(s, what(c)) for s, c in feed(store)[2:]] == [
        (3, ("p", "a", "exited", 3)),
        (4, ("p", "a", "entered", 4)),
        (5, ("p", "b", "exited", 5)),
    ]
    assert members(store) == ["a|p"]


def test_a_profile_enters_over_batches_with_numbered_changes_and_index_rows(
    memory_log: Any, make_event: Any, store: Any
) -> None:
    clock = ManualClock(T0)
    proc = processor(memory_log, store, clock)
    memory_log.append([make_event("track", T0 - 2 * HOUR_MS, user_id="u1", event="Product Viewed")])
    proc.run_once()  # viewer (browsing's hour has passed)
    memory_log.append([make_event("track", T0, user_id="u1", event="Product Viewed")])
    proc.run_once()  # browsing again
    changes = [c for _, c in feed(store) if type(c) is MembershipChange]
    assert [(c.segment, c.kind) for c in changes] == [
        ("viewer", "entered"),
        ("browsing", "entered"),
    ]
    assert [s for s, _ in feed(store)] == list(range(1, len(feed(store)) + 1))
    profile_seqs = [c.sequence for _, c in feed(store)]
    assert profile_seqs == sorted(profile_seqs) == list(range(1, len(profile_seqs) + 1))
    [pid] = {c.profile_id for c in changes}
    assert members(store) == [f"browsing|{pid}", f"viewer|{pid}"]


def test_a_merges_exits_and_the_survivors_run_share_one_numbering(
    memory_log: Any, make_event: Any, store: Any
) -> None:
    clock = ManualClock(T0)
    proc = processor(memory_log, store, clock)
    memory_log.append(
        [
            make_event("track", T0 - 10, anonymous_id="a1", event="Product Viewed"),
            make_event("track", T0 - 9, user_id="u1", event="Order Completed"),
        ]
    )
    proc.run_once()
    memory_log.append([make_event("identify", T0 - 5, anonymous_id="a1", user_id="u1")])
    proc.run_once()
    changes = feed(store)
    assert [s for s, _ in changes] == list(range(1, len(changes) + 1))
    by_profile: dict[str, list[int]] = {}
    for _, c in changes:
        if not isinstance(c, IdentityLinked):
            pid = c.survivor if isinstance(c, ProfileMerged) else c.profile_id
            by_profile.setdefault(pid, []).append(c.sequence)
    assert all(seqs == sorted(set(seqs)) for seqs in by_profile.values())
    [merged] = [c for _, c in changes if isinstance(c, ProfileMerged)]
    held = {
        c.segment
        for _, c in changes
        if type(c) is MembershipChange and c.profile_id == merged.absorbed
    }
    exits = [c for _, c in changes if type(c) is MembershipChange and c.kind == "exited"]
    assert held and {(c.profile_id, c.segment) for c in exits} == {
        (merged.absorbed, s) for s in held
    }
    assert members(store) == [
        f"browsing|{merged.survivor}",
        f"buyer|{merged.survivor}",
        f"viewer|{merged.survivor}",
    ]


def test_a_profile_erased_in_the_batch_it_entered_leaves_no_member_row(store: Any) -> None:
    p = Profile(profile_id="p", created_ms=0)
    batch = Batch(store.begin_global(), now_ms=T0)
    batch.change_memberships(p, ["a", "b"], [], T0)
    p.members = ["a", "b"]
    batch.put(p)
    erase_profiles(batch, ["p"], [])  # the rows are written at flush: the erasure's win
    commit(batch)
    assert members(store) == []


def test_rows_set_in_one_call_are_seen_by_the_transactions_scans(tmp_path: Path) -> None:
    store = RocksStateStore(tmp_path / "s")
    tx = store.begin_global()
    tx.set(keys.MEMBER, "a|p0", b"")
    assert tx.scan(keys.MEMBER, "a|", "a}") == [("a|p0", b"")]  # the scans' overlay exists now
    tx.set_rows(keys.MEMBER, "a|", ["p0", "p1", "p2"], [None, b"", b""])
    assert tx.scan(keys.MEMBER, "a|", "a}") == [("a|p1", b""), ("a|p2", b"")]
    tx.commit()
    assert members(store) == ["a|p1", "a|p2"]
    store.close()
