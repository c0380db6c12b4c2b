from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.state import committed_get, committed_scan

from segflow.db.postgres import SharedStoreUnavailable
from segflow.stream import MemoryStateStore, SqliteStateStore
from segflow.stream.state.postgres import PostgresStateStore
from segflow.stream.state.rocksdb import RocksStateStore


@pytest.fixture(params=["memory", "sqlite", "rocksdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    if request.param == "postgres":
        s: Any = PostgresStateStore(request.getfixturevalue("postgres_dsn"), fresh_schema())
    elif request.param == "rocksdb":
        s = RocksStateStore(tmp_path / "state", sync=False)
    else:
        s = SqliteStateStore(tmp_path / "state.sqlite", synchronous="OFF")
    yield s
    s.close()


def fresh_schema() -> str:
    """A schema of its own for each test (the PostgreSQL server is shared by the session)."""
    return f"t_{uuid.uuid4().hex[:10]}"


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
    assert committed_get(store, "ns", "e") is None  # not committed yet
    tx.commit()
    assert [k for k, _ in committed_scan(store, "ns", "b", "e")] == ["c", "d"]


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


def test_keys_order_byte_wise_in_every_store(store: Any) -> None:
    """Scans return SQLite's (and Python's) order: code points, not a locale's collation."""
    keys = ["a", "B", "a|1", "a}", "é", "Z", "a b", "\U0001f600", "a\x00"]
    tx = store.begin_global()
    for k in keys:
        tx.set("ns", k, b"")
    tx.commit()
    assert [k for k, _ in committed_scan(store, "ns", "", "\U0010ffff")] == sorted(keys)
    assert [k for k, _ in committed_scan(store, "ns", "a", "a}")] == sorted(
        k for k in keys if "a" <= k < "a}"
    )


def test_postgres_cache_sees_commits_of_another_host(postgres_dsn: str) -> None:
    """Two stores on one database (as processors on two hosts): a value cached by one is
    dropped when the other commits."""
    schema = fresh_schema()
    one, two = PostgresStateStore(postgres_dsn, schema), PostgresStateStore(postgres_dsn, schema)
    tx = one.begin_global()
    assert tx.get("owner", "user_id:u") is None  # cached as missing
    tx.commit()
    tx = two.begin_global()
    tx.set("owner", "user_id:u", b"p2")
    tx.commit()
    tx = one.begin_global()
    assert tx.get("owner", "user_id:u") == b"p2"
    tx.rollback()
    tx = one.begin_global()  # the rollback left the cache valid and the lock free
    assert tx.get("owner", "user_id:u") == b"p2"
    tx.commit()
    version = one.version
    two.begin_global().commit()  # an empty commit (an idle timer tick) writes no new version
    tx = one.begin_global()
    assert one.version == version and ("owner", "user_id:u") in one.cache  # cache kept
    tx.commit()
    one.close()
    two.close()


def test_postgres_store_reopens_connections_the_server_dropped(postgres_dsn: str) -> None:
    """A terminated backend (a restarted or failed-over server) fails the transaction that
    meets it with ``SharedStoreUnavailable`` (the processor retries the batch); the next one
    reconnects, for the writer's connection and the pooled snapshot connections alike."""
    import psycopg

    store = PostgresStateStore(postgres_dsn, fresh_schema())
    tx = store.begin_global()
    tx.set("profile", "p", b"1")
    tx.commit()
    optimistic = store.begin_optimistic()
    optimistic.get("profile", "p")
    optimistic.commit()  # its snapshot connection is back in the pool
    pids = [store.con.info.backend_pid, *(c.info.backend_pid for c in store._snapshots)]
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(SharedStoreUnavailable):
        store.begin_global()
    tx = store.begin_global()
    assert tx.get("profile", "p") == b"1"
    tx.commit()
    optimistic = store.begin_optimistic()  # the dead pooled connection is not handed out
    assert optimistic.get("profile", "p") == b"1"
    optimistic.set("profile", "p", b"2")
    optimistic.commit()
    assert committed_get(store, "profile", "p") == b"2"
    store.close()


def test_scans_with_limits_see_pending_writes_past_the_committed_edge(store: Any) -> None:
    """A limited scan whose committed rows are deleted or overtaken by pending writes still
    returns the first ``limit`` live pairs, in both directions."""
    tx = store.begin_global()
    for k in ("b", "d", "f", "h"):
        tx.set("ns", k, k.encode())
    tx.set("other", "c", b"x")
    tx.commit()
    tx = store.begin_global()
    tx.delete("ns", "b")
    tx.delete("ns", "d")
    tx.set("ns", "a", b"new")
    tx.set("ns", "g", b"g")
    tx.set("ns", "f", b"F")
    assert tx.scan("ns", "", "z", limit=2) == [("a", b"new"), ("f", b"F")]
    assert tx.scan("ns", "b", "h", reverse=True, limit=2) == [("g", b"g"), ("f", b"F")]
    assert tx.scan("ns", "c", "c") == [] and tx.scan("ns", "h", "c") == []
    assert [k for k, _ in tx.scan("ns", "", "z", reverse=True)] == ["h", "g", "f", "a"]
    tx.rollback()


def test_prefetched_keys_read_like_gets(store: Any) -> None:
    tx = store.begin_global()
    tx.set("profile", "p1", b"1")
    tx.set("profile", "p2", b"2")
    tx.commit()
    tx = store.begin_global()
    tx.set("profile", "p2", b"two")
    tx.prefetch("profile", ["p1", "p2", "p3"])
    assert [tx.get("profile", k) for k in ("p1", "p2", "p3")] == [b"1", b"two", None]
    tx.commit()


def test_offsets_commit_with_the_state_and_nothing_before(store: Any) -> None:
    tx = store.partition(0).begin()
    tx.set("ns", "k", b"v")
    tx.set_offset(42)
    assert tx.get_offset() == 42
    tx.commit()
    tx = store.partition(0).begin()
    assert tx.get_offset() == 42 and tx.get("ns", "k") == b"v"
    tx.rollback()
