"""The RocksDB state store's own rules: one writer per directory, readers in other processes
(secondaries) that follow the writer, compaction that leaves no erased byte in any file, and
the same answers as the in-memory store for any sequence of writes and scans."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.wait import until

from segflow.stream import MemoryStateStore
from segflow.stream.state.exceptions import StateStoreBusy, StateStoreReadOnly
from segflow.stream.state.rocksdb import (
    RocksReader,
    RocksReadOnlyStore,
    RocksStateStore,
    commits_held,
    open_reader,
)
from segflow.stream.state.sqlite import SqliteStateStore

WRITER = textwrap.dedent(
    """
    import sys
    from segflow.stream.state.rocksdb import RocksStateStore
    store = RocksStateStore(sys.argv[1])
    print("open", flush=True)
    for line in sys.stdin:
        key, value = line.split()
        tx = store.partition(0).begin()
        tx.set("profile", key, value.encode())
        tx.set_offset(tx.get_offset() + 1)
        tx.commit()
        print("committed", key, flush=True)
    store.close()
    """
)


def test_a_second_writer_in_this_process_is_refused_clearly(tmp_path: Path) -> None:
    store = RocksStateStore(tmp_path / "state", sync=False)
    with pytest.raises(StateStoreBusy) as refused:
        RocksStateStore(tmp_path / "state", sync=False)
    assert refused.value.path == str(tmp_path / "state")
    assert refused.value.to_dict()["code"] == "state_store_busy"
    tx = store.begin_global()  # the first store is untouched
    tx.set("ns", "k", b"v")
    tx.commit()
    store.close()
    again = RocksStateStore(tmp_path / "state", sync=False)  # closed: the directory is free
    assert again.reader().get("ns", "k") == b"v"
    again.close()


def test_a_writer_in_another_process_refuses_this_one_and_readers_follow_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state"
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdin is not None and writer.stdout is not None
        assert writer.stdout.readline().strip() == "open"
        with pytest.raises(StateStoreBusy) as refused:
            RocksStateStore(path)
        assert refused.value.pid == writer.pid
        reader = open_reader(path)
        assert reader.get("profile", "p1") is None
        for n, key in enumerate(["p1", "p2", "p3"], start=1):
            writer.stdin.write(f"{key} v{n}\n")
            writer.stdin.flush()
            assert writer.stdout.readline().split() == ["committed", key]
            # every read catches up first: the commit just acknowledged is there
            assert reader.get("profile", key) == f"v{n}".encode()
            assert reader.offsets() == {0: n}
        assert reader.scan("profile", "p", "q", reverse=True, limit=2) == [
            ("p3", b"v3"),
            ("p2", b"v2"),
        ]
        writer.stdin.close()
        assert writer.wait() == 0
    # no primary now: a reader opened afterwards reads what the last one left
    late = RocksReader(path)
    assert late.get("profile", "p3") == b"v3" and reader.get("profile", "p1") == b"v1"
    late.close()
    reader.close()


def test_a_reader_opened_before_the_store_exists_reads_empty_then_follows(
    tmp_path: Path,
) -> None:
    reader = open_reader(tmp_path / "state")
    assert reader.get("ns", "k") is None and reader.offsets() == {}
    assert not (tmp_path / "state").exists()  # a reader never creates the store
    store = RocksStateStore(tmp_path / "state", sync=False)
    tx = store.partition(3).begin()
    tx.set("ns", "k", b"v")
    tx.set_offset(8)
    tx.commit()
    assert reader.get("ns", "k") == b"v" and reader.offsets() == {3: 8}
    reader.close()
    store.close()


def test_a_reader_in_another_process_sees_this_processs_commits(tmp_path: Path) -> None:
    path = tmp_path / "state"
    store = RocksStateStore(path)
    script = textwrap.dedent(
        """
        import sys
        from segflow.stream.state.rocksdb import open_reader
        reader = open_reader(sys.argv[1])
        for line in sys.stdin:
            print(reader.get("profile", line.strip()), flush=True)
        reader.close()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        for n in range(3):
            tx = store.begin_global()
            tx.set("profile", f"p{n}", f"v{n}".encode())
            tx.commit()
            child.stdin.write(f"p{n}\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == repr(f"v{n}".encode())
        child.stdin.close()
        assert child.wait() == 0
    store.close()


def test_a_frozen_reader_keeps_its_instant_and_commits_wait_for_a_held_lock(
    tmp_path: Path,
) -> None:
    store = RocksStateStore(tmp_path / "state", sync=False)
    tx = store.begin_global()
    tx.set("ns", "a", b"1")
    tx.commit()
    with commits_held(tmp_path / "state"):
        frozen = RocksReader(tmp_path / "state", follow=False)
        assert not store.commit_lock.try_lock()  # a commit now would wait
    tx = store.begin_global()
    tx.set("ns", "a", b"2")
    tx.commit()
    assert frozen.get("ns", "a") == b"1" and store.reader().get("ns", "a") == b"2"
    frozen.close()
    store.close()


def test_a_read_only_store_reads_and_refuses_transactions(tmp_path: Path) -> None:
    writer = RocksStateStore(tmp_path / "state", sync=False)
    tx = writer.begin_global()
    tx.set("ns", "k", b"v")
    tx.commit()
    view = RocksReadOnlyStore(tmp_path / "state")
    reader = view.reader()
    assert reader.get("ns", "k") == b"v"
    with pytest.raises(StateStoreReadOnly):
        view.begin_global()
    with pytest.raises(StateStoreReadOnly):
        view.partition(0)
    reader.close()
    writer.close()


def test_only_the_rocksdb_and_memory_stores_are_exclusive(tmp_path: Path) -> None:
    rocks = RocksStateStore(tmp_path / "state", sync=False)
    sqlite = SqliteStateStore(tmp_path / "state.sqlite", synchronous="OFF")
    assert (rocks.exclusive, MemoryStateStore.exclusive, sqlite.exclusive) == (True, True, False)
    rocks.close()
    sqlite.close()


def _block_caches(info_log: Path) -> list[int]:
    """The block cache capacities RocksDB's info log says the opened column family uses."""
    lines = info_log.read_text(errors="replace").splitlines()
    return [int(line.split(":")[1]) for line in lines if line.strip().startswith("capacity :")]


def test_a_reopened_store_reads_with_its_own_options_not_the_persisted_ones(
    tmp_path: Path,
) -> None:
    # rocksdict reloads a directory's persisted column-family options unless given them: the
    # reopened store then read with an 8 MB cache and the creator's table options
    first = RocksStateStore(tmp_path / "state", sync=False, cache_mb=64)
    tx = first.partition(0).begin()
    tx.set("profile", "p", b"v")
    tx.commit()
    first.close()
    again = RocksStateStore(tmp_path / "state", sync=False, cache_mb=32)
    assert again.reader().get("profile", "p") == b"v"
    again.close()
    assert _block_caches(tmp_path / "state" / "LOG") == [32 << 20]
    options = sorted((tmp_path / "state").glob("OPTIONS-*"))[-1].read_text()
    assert "cache_index_and_filter_blocks=false" in options


def _holding(root: Path, needle: bytes) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    )


def test_compaction_leaves_no_erased_byte_in_any_file(tmp_path: Path) -> None:
    """The erased key is the boundary of SST files (in the MANIFEST), in the WAL and in SSTs
    of two levels before ``compact``; in no file after it, while the other pairs stay."""
    secret = b"zz-erased@example.com"
    store = RocksStateStore(tmp_path / "state", sync=False, write_buffer_mb=1, compression="none")
    tx = store.begin_global()
    for i in range(200):
        tx.set("owner", f"email:aa{i}", b"p%d" % i)
    tx.set("owner", f"email:{secret.decode()}", b"p-erased")  # the file's largest key
    tx.commit()
    store.db.flush()
    tx = store.begin_global()
    tx.set("profile", "p-erased", b'{"email": "' + secret + b'"}')
    tx.commit()
    store.db.flush()
    tx = store.begin_global()
    tx.delete("owner", f"email:{secret.decode()}")
    tx.delete("profile", "p-erased")
    tx.commit()
    held = _holding(tmp_path, secret)
    assert any(name.startswith("state/MANIFEST-") for name in held), held
    assert any(name.endswith(".sst") for name in held) and any(n.endswith(".log") for n in held)
    assert _holding(tmp_path, secret)  # still on disk: deletes only add tombstones
    done = store.compact()
    assert _holding(tmp_path, secret) == [] and done["files_removed"] >= 3
    reader = store.reader()
    assert reader.get("owner", "email:aa7") == b"p7" and reader.get("profile", "p-erased") is None
    store.close()
    reopened = RocksStateStore(tmp_path / "state", sync=False)  # and it opens again
    assert reopened.reader().get("owner", "email:aa199") == b"p199"
    reopened.close()


KEYS = st.sampled_from(["a", "b", "ba", "c", "é", "z", "\U0001f600", ""])
# neighbouring namespaces: a scan overlays only its own namespace's writes of the transaction
NAMESPACES = ("ns", "n", "nt")
NS = st.sampled_from(NAMESPACES)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), NS, KEYS, st.binary(max_size=3)),
        st.tuples(st.just("delete"), NS, KEYS, st.just(b"")),
        st.tuples(st.just("scan"), NS, KEYS, KEYS, st.booleans(), st.none() | st.integers(0, 4)),
        st.tuples(st.just("commit")),
        st.tuples(st.just("rollback")),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(OPS)
def test_any_sequence_reads_as_on_the_memory_store(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rocks = RocksStateStore(Path(tmp) / "state", sync=False)
        memory = MemoryStateStore()
        try:
            _replay(ops, rocks, memory)
        finally:
            rocks.close()


def _replay(
    ops: list[tuple[object, ...]], rocks: RocksStateStore, memory: MemoryStateStore
) -> None:
    txs = [rocks.begin_global(), memory.begin_global()]
    for op in ops:
        kind = op[0]
        if kind in ("commit", "rollback"):
            for tx in txs:
                getattr(tx, str(kind))()
            txs = [rocks.begin_global(), memory.begin_global()]
            continue
        answers = []
        for tx in txs:
            ns = str(op[1])
            if kind == "set":
                tx.set(ns, str(op[2]), bytes(op[3]))  # type: ignore[arg-type]
            elif kind == "delete":
                tx.delete(ns, str(op[2]))
            else:
                _, _, start, end, reverse, limit = op
                answers.append(
                    tx.scan(ns, str(start), str(end), reverse=bool(reverse), limit=limit)
                )  # type: ignore[arg-type]
            answers.append([tx.get(ns, str(k)) for k in ("a", "b", "ba", "é", "")])
        assert answers[: len(answers) // 2] == answers[len(answers) // 2 :], op
    for tx in txs:
        tx.commit()
    for ns in NAMESPACES:
        assert rocks.reader().scan(ns, "", "\U0010ffff") == memory.reader().scan(
            ns, "", "\U0010ffff"
        )


def test_scans_and_offsets_stay_in_their_bounds_over_many_keys(tmp_path: Path) -> None:
    """Thousands of keys in neighbouring namespaces and four partitions' offsets: every scan
    returns exactly its range, from the writer's handle and from a secondary."""
    store = RocksStateStore(tmp_path / "state", sync=False)
    keys = {ns: sorted(f"{ns[0]}{i:05d}" for i in range(0, 3000, 3)) for ns in ("a", "ab", "b")}
    tx = store.begin_global()
    for ns, names in keys.items():
        for k in names:
            tx.set(ns, k, k.encode())
    for partition in range(4):
        tx.set_offset(1000 + partition, partition)
    tx.commit()
    secondary = open_reader(tmp_path / "state")
    for reader in (store.reader(), secondary):
        assert reader.offsets() == {0: 1000, 1: 1001, 2: 1002, 3: 1003}
        for ns, names in keys.items():
            start, end = f"{ns[0]}00500", f"{ns[0]}02000"
            inside = [(k, k.encode()) for k in names if start <= k < end]
            assert reader.scan(ns, start, end) == inside
            assert reader.scan(ns, start, end, reverse=True, limit=7) == inside[::-1][:7]
            assert reader.scan(ns, "", "\U0010ffff") == [(k, k.encode()) for k in names]
    secondary.close()
    store.close()


def test_a_reader_with_a_refresh_interval_catches_up_at_most_that_often(tmp_path: Path) -> None:
    store = RocksStateStore(tmp_path / "state", sync=False)
    tx = store.begin_global()
    tx.set("ns", "k", b"1")
    tx.commit()
    slow = open_reader(tmp_path / "state", refresh_ms=3_600_000)
    quick = open_reader(tmp_path / "state", refresh_ms=1)
    assert slow.get("ns", "k") == b"1" == quick.get("ns", "k")  # caught up at open
    tx = store.begin_global()
    tx.set("ns", "k", b"2")
    tx.commit()
    assert slow.get("ns", "k") == b"1"  # an hour has not passed: no catch-up
    until(lambda: quick.get("ns", "k") == b"2", what="the 1 ms reader caught up")
    slow.refresh()
    assert slow.get("ns", "k") == b"2" and slow.scan("ns", "", "z") == [("k", b"2")]
    view = RocksReadOnlyStore(tmp_path / "state", refresh_ms=3_600_000).reader()
    assert view.refresh_s == 3600.0
    for reader in (slow, quick, view):
        reader.close()
    store.close()
