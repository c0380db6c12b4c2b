"""The embedded log beyond the protocol (test_log_contract.py): consumer groups, retention,
durability, group commit, two writers on one file, dedupe pruning."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from segflow.clock import HOUR_MS, ManualClock
from segflow.errors import TransientError
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


def test_a_dedupe_index_that_fails_to_build_fails_the_append_and_the_next_builds_it(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from segflow.log.dedupe import DedupeIndex

    log = open_log(partitions=1)
    assert log._index is None  # not built at open: built by the first append
    broken = [True]

    def index(*args: object, **kwargs: object) -> object:
        if broken.pop() if broken else False:
            raise sqlite3.OperationalError("disk I/O error")
        return DedupeIndex(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("segflow.log.sqlite.DedupeIndex", index)
    with pytest.raises(LogWriteFailed):  # answered, not left waiting on a dead writer
        log.append([make_event("m0")])
    assert log.append([make_event("m0")]) == [(0, 0)]
    assert log.append([make_event("m0")]) == [None]  # the index built, a duplicate


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
