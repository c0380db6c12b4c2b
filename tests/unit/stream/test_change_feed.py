"""The outbox read as a change feed (segflow.stream.outbox.StateChangeFeed): any chunking of
the reads gives every change once, in order, including rows rewritten between two reads."""

from __future__ import annotations

import random
from typing import Any

import pytest

from segflow.spec import IdentityLinked, MembershipChange
from segflow.stream import MemoryStateStore
from segflow.stream.keys import OUTBOX, seq_key
from segflow.stream.outbox import MembershipRun, StateChangeFeed, encode_changes
from segflow.stream.state.rocksdb import RocksStateStore


def linked(seq: int) -> IdentityLinked:
    return IdentityLinked(profile_id=f"p{seq}", id_type="user_id", id_value=f"u{seq}",
                          at_ms=seq, sequence=1)  # fmt: skip


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    made = MemoryStateStore() if request.param == "memory" else RocksStateStore(tmp_path / "s")
    yield made
    if request.param == "rocksdb":
        made.close()


def write_rows(store: Any, sizes: list[int]) -> list[tuple[int, str]]:
    """Rows of ``sizes`` changes each (a run of segments in every third row); returns every
    position as (sequence, what it holds)."""
    expected: list[tuple[int, str]] = []
    seq = 1
    tx = store.begin_global()
    for n, size in enumerate(sizes):
        items: list[Any] = []
        first = seq
        if n % 3 == 2 and size >= 2:
            segments = [f"s{i}" for i in range(size)]
            items.append(MembershipRun(f"p{seq}", seq, seq, 1, segments, []))
            expected += [(seq + i, f"p{seq}:s{i}") for i in range(size)]
            seq += size
        else:
            for _ in range(size):
                items.append(linked(seq))
                expected.append((seq, f"p{seq}"))
                seq += 1
        tx.set(OUTBOX, seq_key(first), encode_changes(items))
    tx.commit()
    return expected


def name(change: Any) -> str:
    if isinstance(change, MembershipChange):
        return f"{change.profile_id}:{change.segment}"
    return str(change.profile_id)


@pytest.mark.parametrize("seed", range(6))
def test_any_chunking_reads_every_change_once_in_order(store: Any, seed: int) -> None:
    rng = random.Random(seed)
    rows = 25 if seed % 2 else 150  # more than one scan of 64 rows
    expected = write_rows(store, [rng.choice([1, 2, 5, 40, 300]) for _ in range(rows)])
    feed = StateChangeFeed(store.reader())
    for start in (0, 1, rng.randrange(len(expected))):
        got: list[tuple[int, str]] = []
        after = start
        while True:
            chunk = feed.read(after, limit=rng.choice([1, 3, 64, 1000]))
            if not chunk:
                break
            got += [(seq, name(c)) for seq, c in chunk]
            after = chunk[-1][0]
        assert got == [e for e in expected if e[0] > start]


def test_a_row_rewritten_between_reads_is_read_as_it_is_now(store: Any) -> None:
    write_rows(store, [10, 10])
    feed = StateChangeFeed(store.reader())
    assert [s for s, _ in feed.read(0, limit=4)] == [1, 2, 3, 4]  # the first row, decoded
    kept: list[Any] = [linked(s) if s % 2 else None for s in range(1, 11)]  # an erasure
    tx = store.begin_global()
    tx.set(OUTBOX, seq_key(1), encode_changes(kept))
    tx.commit()
    assert [s for s, _ in feed.read(4, limit=100)] == [5, 7, 9, *range(11, 21)]


def test_one_read_across_many_small_rows(store: Any) -> None:
    expected = write_rows(store, [1, 2] * 100)  # light traffic: a row per small batch
    feed = StateChangeFeed(store.reader())
    got = feed.read(0, limit=10_000)
    assert [(s, name(c)) for s, c in got] == expected
    assert [s for s, _ in feed.read(7, limit=250)] == [e[0] for e in expected[7:257]]
