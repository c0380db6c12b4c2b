"""Optimistic transactions on state.sqlite and on PostgreSQL: reads validated at commit, own writes visible to
scans, work deferred to commit time, offsets fenced."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.state import committed_get, committed_scan

from segflow.stream.state.optimistic import OptimisticTransaction, StateConflict
from segflow.stream.state.postgres import PostgresStateStore
from segflow.stream.state.sql import SqlStore
from segflow.stream.state.sqlite import SqliteStateStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    found: Any
    if request.param == "postgres":
        schema = f"t_{uuid.uuid4().hex[:10]}"
        found = PostgresStateStore(request.getfixturevalue("postgres_dsn"), schema)
    else:
        found = SqliteStateStore(tmp_path / "state.sqlite", synchronous="OFF")
    tx = found.begin_global()
    for i in range(10):
        tx.set("timeline", f"p|{i:02d}", b"")
    tx.commit()
    yield found
    found.close()


def test_a_changed_read_is_a_conflict_and_writes_nothing(store: Any) -> None:
    first, second = OptimisticTransaction(store), OptimisticTransaction(store)
    assert first.get("profile", "p") is None and second.get("profile", "p") is None
    first.set("profile", "p", b"one")
    first.commit()
    second.set("profile", "p", b"two")
    second.set("owner", "user_id:u", b"p")
    with pytest.raises(StateConflict):
        second.commit()
    assert committed_get(store, "profile", "p") == b"one"
    assert committed_get(store, "owner", "user_id:u") is None


def test_disjoint_reads_both_commit(store: Any) -> None:
    first, second = OptimisticTransaction(store), OptimisticTransaction(store)
    first.get("profile", "a")
    second.get("profile", "b")
    first.set("profile", "a", b"1")
    second.set("profile", "b", b"2")
    first.commit()
    second.commit()
    assert committed_get(store, "profile", "b") == b"2"


def test_offsets_fence_a_second_owner(store: Any) -> None:
    old_owner, new_owner = OptimisticTransaction(store), OptimisticTransaction(store)
    assert old_owner.get_offset(3) == new_owner.get_offset(3) == 0
    new_owner.set_offset(50, 3)
    new_owner.commit()
    old_owner.set_offset(50, 3)
    with pytest.raises(StateConflict):
        old_owner.commit()


def test_scans_see_own_writes_and_page_correctly(store: Any) -> None:
    tx = OptimisticTransaction(store)
    tx.delete("timeline", "p|00")
    tx.delete("timeline", "p|01")
    tx.set("timeline", "p|015", b"")
    tx.set("timeline", "p|99", b"")
    page = [k for k, _ in tx.scan("timeline", "p|", "p}", limit=3)]
    assert page == ["p|015", "p|02", "p|03"]
    everything = [k for k, _ in tx.scan("timeline", "p|", "p}")]
    assert everything == ["p|015", *(f"p|{i:02d}" for i in range(2, 10)), "p|99"]
    assert [k for k, _ in tx.scan("timeline", "p|", "p}", reverse=True, limit=2)] == [
        "p|99",
        "p|09",
    ]


def test_a_changed_range_is_a_conflict(store: Any) -> None:
    tx = OptimisticTransaction(store)
    tx.scan("timeline", "p|", "p}", limit=20)
    other = store.begin_global()
    other.set("timeline", "p|05x", b"")
    other.commit()
    tx.set("profile", "p", b"x")
    with pytest.raises(StateConflict):
        tx.commit()


def test_deferred_work_reads_the_state_at_commit(store: Any) -> None:
    first, second = OptimisticTransaction(store), OptimisticTransaction(store)

    def bump(tx: OptimisticTransaction) -> None:
        seq = int(tx.get("meta", "outbox_seq") or b"0") + 1
        tx.set("meta", "outbox_seq", str(seq).encode())
        tx.set("outbox", f"{seq:016x}", b"change")

    first.defer(lambda: bump(first))
    second.defer(lambda: bump(second))
    first.commit()
    second.commit()  # no conflict: the counter was read only at commit
    assert committed_get(store, "meta", "outbox_seq") == b"2"
    assert len(committed_scan(store, "outbox", "", "g")) == 2
