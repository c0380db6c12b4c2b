from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segflow.stream import MemoryStateStore, SqliteStateStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    s = SqliteStateStore(tmp_path / "state.sqlite", synchronous="OFF")
    yield s
    s.close()


def test_reads_see_own_writes_and_scans_merge_pending(store: Any) -> None:
    tx = store.begin_global()
    for k in ("a", "b", "c", "d"):
        tx.set("ns", k, k.encode())
    tx.commit()
    tx = store.begin_global()
    tx.delete("ns", "b")
    tx.set("ns", "e", b"e")
    assert tx.get("ns", "b") is None and tx.get("ns", "e") == b"e"
    assert [k for k, _ in tx.scan("ns", "a", "z")] == ["a", "c", "d", "e"]
    assert [k for k, _ in tx.scan("ns", "a", "z", reverse=True, limit=2)] == ["e", "d"]
    assert store.reader().get("ns", "e") is None  # not committed yet
    tx.commit()
    assert [k for k, _ in store.reader().scan("ns", "b", "e")] == ["c", "d"]


def test_rollback_discards_state_and_offsets(store: Any) -> None:
    tx = store.partition(2).begin()
    tx.set("ns", "k", b"1")
    tx.set_offset(10)
    tx.rollback()
    tx = store.partition(2).begin()
    assert tx.get("ns", "k") is None and tx.get_offset() == 0
    tx.set_offset(5)
    tx.set_offset(9, partition=3)
    tx.commit()
    tx = store.begin_global()
    assert (tx.get_offset(2), tx.get_offset(3)) == (5, 9)
    with pytest.raises(ValueError):
        tx.get_offset()
    tx.rollback()


def test_sqlite_cache_sees_commits_of_another_process(tmp_path: Path) -> None:
    one = SqliteStateStore(tmp_path / "state.sqlite", synchronous="OFF")
    two = SqliteStateStore(tmp_path / "state.sqlite", synchronous="OFF")
    tx = one.begin_global()
    assert tx.get("owner", "user_id:u") is None  # cached as missing
    tx.commit()
    tx = two.begin_global()
    tx.set("owner", "user_id:u", b"p2")
    tx.commit()
    tx = one.begin_global()
    assert tx.get("owner", "user_id:u") == b"p2"
    tx.rollback()
    one.close()
    two.close()
