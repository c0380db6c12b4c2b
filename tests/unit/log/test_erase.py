"""Erasing records of the embedded log: other offsets stay valid, consumers read on, dead
letters holding an identifier go, compaction leaves no byte; retention waits for consumers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segflow.clock import ManualClock
from segflow.log.base import DeadLetter
from segflow.log.sqlite import SqliteEventLog
from segflow.spec.events import Event

OpenLog = Callable[..., SqliteEventLog]


def event(message_id: str, user: str) -> Event:
    return Event(
        type="track",
        message_id=message_id,
        source_id="s",
        timestamp_ms=1,
        received_at_ms=1,
        user_id=user,
        event="E",
    )


def test_erased_records_leave_a_gap_that_readers_and_appends_respect(open_log: OpenLog) -> None:
    log = open_log(partitions=1)
    log.append([event(f"m{i}", "secret-user" if i in (1, 3) else "other") for i in range(5)])
    assert log.erase([(0, 1), (0, 3), (0, 3)]) == 2
    assert [r.offset for r in log.read(0, 0)] == [0, 2, 4]
    assert [r.offset for r in log.read(0, 1, 1)] == [2]  # a consumer at offset 1 reads on
    assert log.append([event("m5", "other")]) == [(0, 5)]  # offsets are never reused
    assert log.erase([(0, 1)]) == 0  # idempotent


def test_dead_letters_go_only_when_they_hold_the_identifier(open_log: OpenLog) -> None:
    log = open_log()
    letters = [
        DeadLetter(
            source_id="s", received_at_ms=1, field="event", reason="required", payload=payload
        )
        for payload in (
            b'{"userId": "Secret-User", "type": "track"}',
            b'{"userId": "other", "properties": {"note": "not secret-use"}}',
            b"not json at all secret-user",
        )
    ]
    log.dead_letter(letters)

    def holds(payload: bytes) -> bool:
        return b"secret-user" in payload.lower()

    assert log.erase_dead_letters(holds, [b"secret-user"]) == 2
    assert [d.payload for d in log.dead_letters()] == [letters[1].payload]
    assert log.erase_dead_letters(holds, []) == 0


def test_compaction_leaves_no_byte_of_erased_records(tmp_path: Path, open_log: OpenLog) -> None:
    log = open_log(partitions=1)
    log.append([event("m0", "canary-user-7f3a"), event("m1", "control-user-7f3a")])
    log.erase([(0, 0)])
    log.compact()
    files = [p.read_bytes() for p in tmp_path.glob("log.sqlite*")]
    assert not any(b"canary-user-7f3a" in data for data in files)
    assert any(b"control-user-7f3a" in data for data in files)
    assert (tmp_path / "log.sqlite-wal").stat().st_size == 0


def test_retention_waits_for_every_required_consumer(open_log: OpenLog) -> None:
    log = open_log(partitions=1, clock=ManualClock(10_000))
    log.append([event(f"m{i}", "u") for i in range(4)])
    log.commit("processor", {0: 4})
    # the warehouse loader has not committed yet: nothing may go
    assert log.apply_retention(required_groups=("processor", "warehouse")) == 0
    log.commit("warehouse", {0: 2})
    assert log.apply_retention(required_groups=("processor", "warehouse")) == 2
    assert [r.offset for r in log.read(0, 0)] == [2, 3]


def test_payloads_read_through_the_memory_map_survive_erasure_and_a_shrinking_file(
    open_log: OpenLog,
) -> None:
    log = open_log(partitions=2)
    events = [event(f"m{i}", f"user-{i % 7}") for i in range(3_000)]
    log.append(events)
    log.compact()  # the records in the file itself, not only in its write-ahead log
    positions = [(p, o) for p, end in log.end_offsets().items() for o in range(end)]
    before = log.read_payloads(positions)  # the file is mapped from here on
    assert len(before) == 3_000
    assert {r.offset: before[(r.partition, r.offset)] for r in log.read_at(positions[:5])}
    erased = positions[: len(positions) // 2]
    log.erase(erased)
    size = log.path.stat().st_size
    log.compact()
    assert log.path.stat().st_size < size  # the mapped file shrank
    after = log.read_payloads(positions)
    assert set(after) == set(positions) - set(erased)
    assert all(after[pos] == before[pos] for pos in after)
