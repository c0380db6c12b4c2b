"""The embedded log: offsets, dedupe, consumers, retention, durability, group commit."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.clock import HOUR_MS, ManualClock
from segflow.errors import TransientError
from segflow.log.base import DeadLetter, EventLog, partition_for
from segflow.log.exceptions import LogBackpressure, LogWriteFailed
from segflow.log.sqlite import SqliteEventLog
from segflow.spec.events import Event

OpenLog = Callable[..., SqliteEventLog]


def make_event(
    message_id: str, user: str = "u1", *, source: str = "s1", received_at_ms: int = 1_000
) -> Event:
    return Event(
        type="track",
        message_id=message_id,
        source_id=source,
        timestamp_ms=received_at_ms,
        received_at_ms=received_at_ms,
        user_id=user,
        event="E",
    )


def test_is_an_event_log(open_log: OpenLog) -> None:
    log: EventLog = open_log()
    assert log.partitions == 8


def test_append_assigns_consecutive_offsets_per_partition(open_log: OpenLog) -> None:
    log = open_log(partitions=2)
    events = [make_event(f"m{i}", user=f"u{i % 5}") for i in range(20)]
    positions = log.append(events)
    for p in range(2):
        offsets = [pos[1] for pos, e in zip(positions, events, strict=True) if pos and pos[0] == p]
        assert offsets == list(range(len(offsets)))
    assert all(
        pos and pos[0] == partition_for(e.identity_key, 2)
        for pos, e in zip(positions, events, strict=True)
    )


def test_read_returns_events_in_offset_order(open_log: OpenLog) -> None:
    log = open_log(partitions=1)
    log.append([make_event(f"m{i}") for i in range(5)])
    records = log.read(0, 2, max_records=2)
    assert [(r.offset, r.event.message_id) for r in records] == [(2, "m2"), (3, "m3")]


def test_duplicates_are_stored_once(open_log: OpenLog) -> None:
    log = open_log(partitions=1)
    first = log.append([make_event("a"), make_event("b"), make_event("a")])
    second = log.append([make_event("b"), make_event("c")])
    assert first == [(0, 0), (0, 1), None]
    assert second == [None, (0, 2)]
    assert [r.event.message_id for r in log.read(0, 0)] == ["a", "b", "c"]


def test_dedupe_is_per_source(open_log: OpenLog) -> None:
    log = open_log(partitions=1)
    assert None not in log.append([make_event("a", source="s1"), make_event("a", source="s2")])


def test_dedupe_window(open_log: OpenLog) -> None:
    log = open_log(partitions=1, dedupe_window_ms=24 * HOUR_MS)
    log.append([make_event("a", received_at_ms=0)])
    assert log.append([make_event("a", received_at_ms=24 * HOUR_MS)]) == [None]
    assert log.append([make_event("a", received_at_ms=24 * HOUR_MS + 1)]) == [(0, 1)]


def test_consumer_offsets_and_groups(open_log: OpenLog) -> None:
    log = open_log(partitions=2)
    assert log.committed("proc") == {0: 0, 1: 0}
    log.commit("proc", {1: 5})
    log.commit("proc", {1: 3})  # never moves back
    assert log.committed("proc") == {0: 0, 1: 5}
    assert log.consumer_groups() == ["proc"]


def test_retention_after_every_group_passed_keeps_offsets(open_log: OpenLog) -> None:
    clock = ManualClock(10_000)
    log = open_log(partitions=1, clock=clock)
    log.append([make_event(f"m{i}") for i in range(6)])
    assert log.apply_retention() == 0  # no consumer yet: keep everything
    log.commit("a", {0: 4})
    log.commit("b", {0: 2})
    assert log.apply_retention() == 2
    assert [r.offset for r in log.read(0, 0)] == [2, 3, 4, 5]
    log.commit("b", {0: 6})
    log.commit("a", {0: 6})
    assert log.apply_retention() == 4
    assert log.append([make_event("m6")]) == [(0, 6)]


def test_retention_respects_age(open_log: OpenLog) -> None:
    clock = ManualClock(10_000)
    log = open_log(partitions=1, clock=clock)
    log.append([make_event("m0")])
    log.commit("a", {0: 1})
    assert log.apply_retention(older_than_ms=HOUR_MS) == 0
    clock.advance(HOUR_MS)
    assert log.apply_retention(older_than_ms=HOUR_MS) == 1


def test_dead_letters_are_kept(open_log: OpenLog) -> None:
    log = open_log()
    letter = DeadLetter(
        source_id="s1",
        received_at_ms=5,
        field="event",
        reason="required",
        payload=b"{}",
        message_id="m",
    )
    log.dead_letter([letter])
    (stored,) = log.dead_letters()
    assert (stored.field, stored.reason, stored.payload, stored.message_id) == (
        "event",
        "required",
        b"{}",
        "m",
    )


def test_write_failure_is_transient_and_leaves_no_gap(open_log: OpenLog) -> None:
    log = open_log(partitions=1)
    log.append([make_event("m0")])
    page_count = log._write.execute("PRAGMA page_count").fetchone()[0]
    log._write.execute(f"PRAGMA max_page_count={page_count}")  # a full disk, for real
    big = [make_event(f"big{i}", received_at_ms=1_000) for i in range(2_000)]
    with pytest.raises(LogWriteFailed) as info:
        log.append(big)
    assert isinstance(info.value, TransientError)
    log._write.execute("PRAGMA max_page_count=1073741823")
    assert log.append([make_event("m1")]) == [(0, 1)]
    assert log.append([make_event("big0")]) == [(0, 2)]  # the failed append left no dedupe entry


def test_backpressure_when_too_much_is_waiting(open_log: OpenLog) -> None:
    log = open_log(max_pending_events=10)
    with log._write_lock:  # hold the writer
        first = log.submit([make_event(f"a{i}") for i in range(8)])
        with pytest.raises(LogBackpressure):
            log.submit([make_event(f"b{i}") for i in range(8)])
    first.result()


def test_concurrent_appends_share_a_commit(open_log: OpenLog) -> None:
    log = open_log()
    log.append([make_event("warm")])
    before = log.commits
    with log._write_lock:  # the writer blocks on its next group while we queue 50 appends
        futures = [log.submit([make_event(f"m{i}")]) for i in range(50)]
    assert all(f.result() for f in futures)
    assert log.commits - before <= 2


def test_threads_append_without_losing_or_duplicating(open_log: OpenLog) -> None:
    log = open_log(partitions=4)

    def worker(t: int) -> None:
        for i in range(20):
            log.append(
                [make_event(f"t{t}-{i}", user=f"u{i}"), make_event(f"t{t}-{i}", user=f"u{i}")]
            )

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [r.event.message_id for p in range(4) for r in log.read(p, 0, 10_000)]
    assert sorted(ids) == sorted({f"t{t}-{i}" for t in range(4) for i in range(20)})


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.lists(st.tuples(st.integers(0, 30), st.integers(0, 4)), min_size=1, max_size=8),
        ),
        st.tuples(st.just("reopen"), st.none()),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(ops=operations)
def test_offsets_never_go_back_no_gap_no_duplicate_across_restarts(
    ops: list[tuple[str, object]],
) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        log = SqliteEventLog(root / "log.sqlite", partitions=3)
        model: dict[int, list[str]] = {0: [], 1: [], 2: []}
        stored: set[str] = set()
        for op, arg in ops:
            if op == "reopen":
                log.close()
                log = SqliteEventLog(root / "log.sqlite", partitions=3)
                continue
            batch = [make_event(f"m{mid}", user=f"u{user}") for mid, user in arg]  # type: ignore[attr-defined]
            before = log.end_offsets()
            positions = log.append(batch)
            for event, pos in zip(batch, positions, strict=True):
                if event.message_id in stored:
                    assert pos is None
                    continue
                assert pos is not None
                stored.add(event.message_id)
                model[pos[0]].append(event.message_id)
            after = log.end_offsets()
            assert all(after[p] >= before[p] for p in after)
        for p, ids in model.items():
            records = log.read(p, 0, 10_000)
            assert [r.offset for r in records] == list(range(len(ids)))
            assert [r.event.message_id for r in records] == ids
        log.close()
    finally:
        shutil.rmtree(root)


def test_two_writers_on_one_file_keep_offsets_consecutive(open_log: OpenLog) -> None:
    """``segflow import`` appends while ``segflow serve`` holds the log open."""
    first, second = open_log(partitions=1), open_log(partitions=1)
    first.append([make_event("a")])
    second.append([make_event("b")])
    assert first.append([make_event("c"), make_event("b")]) == [(0, 2), None]
    assert [r.event.message_id for r in second.read(0, 0)] == ["a", "b", "c"]


def test_dedupe_rows_older_than_the_window_are_pruned(open_log: OpenLog) -> None:
    log = open_log(partitions=1, dedupe_window_ms=HOUR_MS)
    for i in range(150):  # prune runs every 100 commits
        log.append([make_event(f"m{i}", received_at_ms=i * HOUR_MS // 10)])
    kept = log._write.execute("SELECT count(*) FROM dedupe_log").fetchone()[0]
    assert kept < 150 and len(log._dedupe) <= kept + 1
    assert log.append([make_event("m149", received_at_ms=149 * HOUR_MS // 10)]) == [None]
    assert log.append([make_event("m0", received_at_ms=149 * HOUR_MS // 10)]) == [(0, 150)]


def test_dedupe_index_survives_restart(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=1)
    log.append([make_event("a")])
    log.close()
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=1)
    try:
        assert log.append([make_event("a"), make_event("b")]) == [None, (0, 1)]
    finally:
        log.close()
