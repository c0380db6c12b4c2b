"""The readers of a RocksDB state directory in one process share one secondary instance, whose
memtables (the primary's unflushed writes, replayed) are released once the primary flushes:
a reader process under a steady writer holds one write buffer, not one per reader."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from segflow.stream.state import secondary
from segflow.stream.state.rocksdb import RocksReader, RocksStateStore, open_reader

VALUE = b"x" * 200

READER_PROCESS = textwrap.dedent(
    """
    import random, sys
    from pathlib import Path
    from segflow.stream.state.rocksdb import open_reader

    def rss_anon_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) // 1024

    path, stop = sys.argv[1], Path(sys.argv[2])
    readers = [open_reader(path, refresh_ms=5) for _ in range(3)]  # the API, two change feeds
    rng, rss, memtables, found = random.Random(7), 0, 0, 0
    print("open", flush=True)
    while not stop.exists():
        for reader in readers:
            for _ in range(200):
                found += reader.get("p", f"k{rng.randrange(100_000):06d}") is not None
        rss = max(rss, rss_anon_mb())
        memtables = max(memtables, readers[0].secondary.memtable_bytes() >> 20)
    print(rss, memtables, found, flush=True)
    """
)


def write(store: RocksStateStore, start: int, count: int, per_commit: int = 1_000) -> None:
    for first in range(start, start + count, per_commit):
        tx = store.begin_global()
        for n in range(first, min(first + per_commit, start + count)):
            tx.set("p", f"k{n:06d}", VALUE)
        tx.commit()


def test_readers_of_one_directory_in_one_process_share_one_secondary(tmp_path: Path) -> None:
    store = RocksStateStore(tmp_path / "state", sync=False)
    write(store, 0, 10)
    readers = [open_reader(tmp_path / "state", refresh_ms=ms) for ms in (0, 5, 60_000)]
    frozen = RocksReader(tmp_path / "state", follow=False)
    shared = readers[0].secondary
    assert all(r.secondary is shared for r in readers) and shared.users == 3
    assert frozen.secondary is not shared  # a backup's frozen view is its own
    write(store, 10, 10)
    assert readers[0].get("p", "k000019") == VALUE  # refresh 0: caught up before the read
    assert readers[2].get("p", "k000019") == VALUE  # the shared catch-up served it too
    assert frozen.get("p", "k000019") is None and frozen.get("p", "k000009") == VALUE
    info_dir = shared.info_dir
    assert info_dir is not None and Path(info_dir).is_dir()
    readers[0].close()
    readers[0].close()  # closing twice gives the instance back once
    assert shared.users == 2 and readers[1].scan("p", "", "z", limit=3)[0][0] == "k000000"
    readers[1].close()
    readers[2].close()
    assert shared.db is None and not Path(info_dir).exists()
    again = open_reader(tmp_path / "state")
    assert again.secondary is not shared and again.get("p", "k000019") == VALUE
    for reader in (again, frozen):
        reader.close()
    store.close()


def test_the_secondary_releases_what_it_replayed_once_the_primary_flushes(
    tmp_path: Path,
) -> None:
    store = RocksStateStore(tmp_path / "state", sync=False)  # 64 MB write buffer: no flush
    reader = open_reader(tmp_path / "state")
    write(store, 0, 20_000)  # ~4.5 MB of writes
    assert reader.get("p", "k019999") == VALUE
    replayed = reader.secondary.memtable_bytes()
    assert replayed > 4 << 20  # the whole unflushed WAL, replayed into its memtables
    store.db.flush()  # the primary writes its memtable to a table file and starts a new WAL
    write(store, 20_000, 10)  # a write in the new WAL seals the replayed memtable
    reader.refresh()
    # down to an almost empty memtable (its bloom filter and first arena block: ~2.4 MB)
    assert reader.secondary.memtable_bytes() < replayed // 2
    rows = reader.scan("p", "", "z")
    assert len(rows) == 20_010 and all(value == VALUE for _, value in rows)
    assert reader.get("p", "k000000") == VALUE == reader.get("p", "k020009")
    reader.close()
    store.close()


def test_a_reader_process_under_a_steady_writer_holds_one_write_buffer(tmp_path: Path) -> None:
    path, stop = tmp_path / "state", tmp_path / "stop"
    store = RocksStateStore(path, sync=False, write_buffer_mb=8)
    write(store, 0, 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", READER_PROCESS, str(path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "open"
        for _ in range(4):  # ~90 MB of writes over 100,000 keys: ~10 flushes of 8 MB
            write(store, 0, 100_000)
        stop.touch()
        rss_mb, memtables_mb, found = map(int, child.stdout.readline().split())
        assert child.wait() == 0
    store.close()
    assert found > 0
    # one instance for the three readers, its memtables released at each flush: at most the
    # primary's two write buffers (one filling, one flushing) and what is being sealed
    assert memtables_mb <= 3 * 8
    # Python and RocksDB's code (~40 MB) + those memtables + the 16 MB block cache, with a
    # generous margin for the allocator (three private secondaries: three of each)
    assert rss_mb < 40 + 3 * 8 + secondary.READER_CACHE_MB + 80
