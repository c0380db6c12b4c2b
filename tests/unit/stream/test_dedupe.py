"""The processor drops a message id its partition processed within the dedupe window
(segflow.stream.dedupe): what the Kafka driver needs when a collector appended a retry twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from segflow.clock import MINUTE_MS, ManualClock
from segflow.rules import compile_segments
from segflow.stream import MemoryStateStore, Processor, ProfileReader, SqliteStateStore, keys
from segflow.stream.processor import ProcessorSettings
from segflow.stream.state.rocksdb import RocksStateStore

MemoryLog = Any
EventFactory = Callable[..., Any]
T0 = 1_700_000_000_000
WINDOW = 60 * MINUTE_MS
RULES = {"twice": 'did "Viewed" at least 2 times'}


def drain(proc: Processor) -> int:
    total = 0
    while (n := proc.run_once(50)) > 0:
        total += n
    return total


def open_store(kind: str, path: Path) -> Any:
    if kind == "memory":
        return MemoryStateStore()
    if kind == "rocksdb":
        return RocksStateStore(path / "state", sync=False)
    return SqliteStateStore(path / "state.sqlite", synchronous="OFF")


@pytest.fixture(params=["memory", "sqlite", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s = open_store(request.param, tmp_path)
    yield s
    s.close()


def processor(log: MemoryLog, store: Any, window_ms: int = WINDOW, now: int = T0) -> Processor:
    settings = ProcessorSettings(dedupe_window_ms=window_ms)
    return Processor(log, store, compile_segments(RULES), ManualClock(now), settings)


def viewed(make_event: EventFactory, message_id: str, received_at: int, user: str = "u1") -> Any:
    event = make_event("track", T0, user_id=user, event="Viewed", message_id=message_id)
    return msgspec.structs.replace(event, received_at_ms=received_at)


def members(store: Any, log: MemoryLog, user: str = "u1") -> list[str]:
    profile = ProfileReader(store.reader(), log).lookup("user_id", user)
    assert profile is not None
    return list(profile.members)


def test_a_retried_message_is_counted_once_within_a_batch_and_across_batches(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    proc = processor(memory_log, store)
    memory_log.append([viewed(make_event, "m1", T0), viewed(make_event, "m1", T0 + 1_000)])
    assert drain(proc) == 2  # both consumed, one counted
    assert members(store, memory_log) == []
    memory_log.append([viewed(make_event, "m1", T0 + 30 * MINUTE_MS)])  # the retry, later
    drain(proc)
    assert members(store, memory_log) == []
    memory_log.append([viewed(make_event, "m2", T0 + 31 * MINUTE_MS)])
    drain(proc)
    assert members(store, memory_log) == ["twice"]
    assert sum(memory_log.end_offsets().values()) == 4
    tx = store.begin_global()
    assert {p: tx.get_offset(p) for p in range(4)} == memory_log.end_offsets()
    tx.rollback()


def test_without_the_setting_a_duplicate_in_the_log_counts_twice(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    memory_log.append([viewed(make_event, "m1", T0), viewed(make_event, "m1", T0 + 1_000)])
    drain(processor(memory_log, store, window_ms=0))
    assert members(store, memory_log) == ["twice"]


def test_a_message_id_seen_longer_ago_than_the_window_counts_again(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    """As the embedded log decides: the window bounds what is remembered."""
    memory_log.append([viewed(make_event, "m1", T0)])
    memory_log.append([viewed(make_event, "m1", T0 + WINDOW + 1)])
    drain(processor(memory_log, store))
    assert members(store, memory_log) == ["twice"]


def test_a_slightly_earlier_clock_on_the_retry_is_still_a_duplicate(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    """Two collectors' clocks: the retry's received_at may be before the first's, even in the
    previous bucket."""
    first = (T0 // WINDOW + 1) * WINDOW  # the first of a bucket
    memory_log.append([viewed(make_event, "m1", first), viewed(make_event, "m1", first - 5)])
    drain(processor(memory_log, store))
    assert members(store, memory_log) == []


def test_the_index_survives_a_restart(
    tmp_path: Path, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    store = open_store("rocksdb", tmp_path)
    memory_log.append([viewed(make_event, "m1", T0)])
    drain(processor(memory_log, store))
    store.close()
    store = open_store("rocksdb", tmp_path)
    try:
        memory_log.append([viewed(make_event, "m1", T0 + 10 * MINUTE_MS)])
        assert drain(processor(memory_log, store)) == 1
        assert members(store, memory_log) == []
    finally:
        store.close()


def test_buckets_older_than_the_window_are_deleted(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    proc = processor(memory_log, store, window_ms=1_000)
    for i in range(5):
        memory_log.append([viewed(make_event, f"m{i}", T0 + i * 1_000)])
        drain(proc)
    rows = store.reader().scan(keys.SEEN, "", "\U0010ffff")
    # m0 and m1's buckets are more than two windows behind m4's: gone; m2 to m4 kept
    assert sorted(v for _, v in rows) == [str(T0 + i * 1_000).encode() for i in (2, 3, 4)]
