"""The processor's state in a local LSM store: RocksDB (through ``rocksdict``) in ``DATA_DIR/state/``.

**Layout.** One key space, byte-ordered: a pair ``(ns, key)`` is stored under
``ns + b"\\0" + key`` (UTF-8), so a range of one namespace is a range of keys and the order is
the SQLite store's (UTF-8 bytes, i.e. code points). Consumer offsets live under their own
prefix ``b"\\xff" + b"offset:" + partition`` (``0xff`` never occurs in UTF-8, so no namespace
reaches it), as decimal ASCII.

**Transactions.** A transaction holds the store's in-process lock from ``begin`` to
``commit``/``rollback`` (one writer at a time, as SQLite's ``BEGIN IMMEDIATE``), so its reads
are stable; writes are buffered in an overlay (deletes as ``None`` tombstones) that its own
reads see first. ``commit`` writes the overlay and the offsets as **one** ``WriteBatch``,
synced to the write-ahead log (``sync=True``: an acknowledged commit survives SIGKILL and
power loss; a torn last record after a crash was never acknowledged and is dropped by the
point-in-time WAL recovery). A commit that writes nothing touches no file. Commits take the
directory's ``commit.lock`` (``flock``) for the duration of the write: ``segflow backup`` takes
it to pin the state at the same instant as the other stores (:func:`commits_held`).

**One writer.** RocksDB allows one writing process per directory. The store holds
``writer.lock`` (``flock``, with the owner's pid) for its lifetime, so a second writer — another
process, or a second store in this one — gets :class:`StateStoreBusy` naming the directory and
the pid instead of RocksDB's own lock error. Since nobody else writes, ``exclusive = True``: the
processor may cache committed values across transactions.

**Readers.** In the writer's process :meth:`RocksStateStore.reader` shares the primary's
handle (reads see every commit at once). Other processes (the CLI, ``serve --role api``, the
warehouse CLI, backups) use :class:`RocksReader`: a RocksDB *secondary* instance that tails the
primary's MANIFEST and WAL, caught up before every read, or at most every ``refresh_ms``
(a catch-up measured ~0.3 ms on an idle store: the admin API's readers use 5 ms,
``api.state_refresh_ms``); it works as well when no primary runs (it then reads what the last
one left). The following readers of one directory in one process share one secondary instance
(:mod:`segflow.stream.state.secondary`: its memtables hold the primary's unflushed writes, once
per process, and a 16 MB block cache).

**Options** (:func:`options`), tuned for point lookups and batched writes:

- block-based tables with a full **bloom filter** (10 bits/key, ~1% false positives: a miss —
  a new identifier — costs no data-block read), a **hash index inside data blocks**
  (``binary_and_hash``: a hit is found without the binary search), data blocks in an LRU
  **block cache** (``cache_mb``); index and filter blocks stay with the open table files
  (about 1.5% of the state's bytes) — through the cache, a file's one index block, larger than
  a cache shard, was re-read on every get (450 µs instead of 4 µs once the state outgrew a few
  hundred thousand events);
- a **memtable bloom** (whole-key) so point reads of keys not in the memtable skip it;
- ``write_buffer_mb`` memtables (64 MB: a batch's writes are sequential appends; fewer,
  larger L0 files), two background jobs (the machine has few cores), ``bytes_per_sync`` so
  flushes and compactions write back smoothly;
- LZ4 on the upper levels, ZSTD on the bottommost (where most bytes live); ``compression =
  "none"`` stores SST blocks as they are (the privacy canary test searches the files' bytes,
  which compressed blocks would hide — erased pairs are gone either way: compaction rewrites
  the files without them);
- no WAL recycling, no WAL archive (``recycle_log_file_num = 0``, ``WAL_ttl_seconds = 0``) and
  ``max_manifest_file_size = 1`` (every version edit — a flush, a compaction — writes a fresh
  MANIFEST of the live files and deletes the old one, a few KB): so that after
  :meth:`RocksStateStore.compact` no old WAL, SST or MANIFEST keeps erased keys (a MANIFEST
  records each SST's smallest and largest key, and would otherwise grow for ever);
- small, few info logs (``LOG``: 1 MB, 3 kept).

>>> import tempfile
>>> store = RocksStateStore(tempfile.mkdtemp())
>>> tx = store.partition(1).begin(); tx.set("ns", "k", b"v"); tx.set_offset(7); tx.commit()
>>> store.reader().get("ns", "k"), store.partition(1).begin().get_offset()
(b'v', 7)
>>> store.close()
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import rocksdict

from segflow.stream.state import secondary
from segflow.stream.state.base import Offsets, Partition
from segflow.stream.state.exceptions import StateStoreBusy, StateStoreReadOnly

SEP = "\x00"
OFFSET_PREFIX = b"\xffoffset:"
WRITER_LOCK = "writer.lock"
COMMIT_LOCK = "commit.lock"

__all__ = [
    "RocksReader",
    "RocksStateStore",
    "commits_held",
    "open_db",
    "open_reader",
    "options",
]


def options(
    *,
    cache_mb: int = 64,
    write_buffer_mb: int = 64,
    compression: str = "lz4",
    create: bool = True,
    cache: rocksdict.Cache | None = None,
) -> rocksdict.Options:
    """The store's RocksDB options (module docstring, "Options"); ``cache``: a block cache
    to share instead of a new one of ``cache_mb``."""
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(cache if cache is not None else rocksdict.Cache(cache_mb << 20))
    # index and filter blocks live with the open table files, not in the block cache: an SST
    # file's index is one block (~1.3 MB for a 180 MB file), larger than a cache shard
    # (64 MB / 64 shards), so through the cache it was read and parsed again on every get:
    # 450 µs a get instead of 4 once a state outgrew ~300k events (BENCHMARKS.md, backfill)
    table.set_cache_index_and_filter_blocks(False)
    table.set_data_block_index_type(rocksdict.DataBlockIndexType.binary_and_hash())
    table.set_data_block_hash_ratio(0.75)
    table.set_format_version(5)
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(create)
    opts.set_block_based_table_factory(table)
    opts.set_memtable_whole_key_filtering(True)
    opts.set_memtable_prefix_bloom_ratio(0.02)
    opts.set_write_buffer_size(write_buffer_mb << 20)
    opts.set_max_background_jobs(2)
    opts.set_bytes_per_sync(1 << 20)
    if compression == "none":
        opts.set_compression_type(rocksdict.DBCompressionType.none())
        opts.set_bottommost_compression_type(rocksdict.DBCompressionType.none())
    else:
        opts.set_compression_type(rocksdict.DBCompressionType.lz4())
        opts.set_bottommost_compression_type(rocksdict.DBCompressionType.zstd())
    opts.set_recycle_log_file_num(0)
    opts.set_wal_ttl_seconds(0)
    opts.set_wal_size_limit_mb(0)
    opts.set_max_manifest_file_size(1)
    opts.set_max_log_file_size(1 << 20)
    opts.set_keep_log_file_num(3)
    return opts


def open_db(path: str | Path, opts: rocksdict.Options, **kwargs: Any) -> Any:
    """``rocksdict.Rdict`` at ``path`` with ``opts`` — for the default column family too.

    Reopening a directory, rocksdict loads the column families' options persisted there
    (``OPTIONS-*``) unless they are given, so the block-based table options passed with
    ``opts`` alone would be dropped for the one column family the store uses, in favour of
    what the directory was created with and an 8 MB block cache: a restarted processor read
    its state 50-100x slower than the one that wrote it (BENCHMARKS.md, backfill).
    """
    return rocksdict.Rdict(str(path), opts, column_families={"default": opts}, **kwargs)


def encode(ns: str, key: str) -> bytes:
    return f"{ns}{SEP}{key}".encode()


def offset_key(partition: int) -> bytes:
    return OFFSET_PREFIX + str(partition).encode()


def _bounds(ns: str, start: str, end: str) -> tuple[bytes, bytes, int]:
    prefix = f"{ns}{SEP}".encode()
    return prefix + start.encode(), prefix + end.encode(), len(prefix)


def scan_db(db: Any, lower: bytes, upper: bytes, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
    """Committed pairs with ``lower <= key < upper``, in key order (descending: ``reverse``).

    The bounds are a seek and a check here, not ``ReadOptions.set_iterate_*_bound``: rocksdict
    0.3.29 hands RocksDB a bound whose memory does not live as long as the iterator (scans
    stopped early or ran past it, at random).
    """
    if lower >= upper:
        return iter(())
    if not reverse:
        return itertools.takewhile(lambda kv: kv[0] < upper, db.items(from_key=lower))
    rows = db.items(backwards=True, from_key=upper)  # the last key <= upper
    rows = itertools.dropwhile(lambda kv: kv[0] >= upper, rows)
    return itertools.takewhile(lambda kv: kv[0] >= lower, rows)


def merge(
    rows: Iterator[tuple[bytes, bytes]],
    mine: list[tuple[bytes, bytes | None]],
    reverse: bool,
    limit: int | None,
) -> list[tuple[bytes, bytes]]:
    """``rows`` (committed, ordered) overlaid with ``mine`` (a transaction's writes in the same
    range, ordered the same way; ``None`` deletes), up to ``limit`` pairs.

    >>> merge(iter([(b"a", b"1"), (b"c", b"3")]), [(b"a", None), (b"b", b"2")], False, None)
    [(b'b', b'2'), (b'c', b'3')]
    """
    out: list[tuple[bytes, bytes]] = []
    want = -1 if limit is None else limit
    if want == 0:
        return out
    i, n = 0, len(mine)

    def before(a: bytes, b: bytes) -> bool:
        return a > b if reverse else a < b

    def emit(key: bytes, value: bytes | None) -> bool:
        """Add a live pair; True once ``limit`` pairs are had."""
        if value is not None:
            out.append((key, value))
        return len(out) == want

    for key, committed in rows:
        while i < n and before(mine[i][0], key):  # pending keys ahead of this committed one
            if emit(*mine[i]):
                return out
            i += 1
        value: bytes | None = committed
        if i < n and mine[i][0] == key:  # overwritten or deleted in the transaction
            value, i = mine[i][1], i + 1
        if emit(key, value):
            return out
    for key, pending in mine[i:]:
        if emit(key, pending):
            break
    return out


def _decode(rows: list[tuple[bytes, bytes]], skip: int) -> list[tuple[str, bytes]]:
    return [(k[skip:].decode(), v) for k, v in rows]


class _Lockfile:
    """An ``flock`` on a file of the state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_lock(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def lock(self, timeout_s: float | None = None) -> bool:
        """Wait for the lock (``None``: for ever); False when ``timeout_s`` passed first."""
        if timeout_s is None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            return True
        deadline = time.monotonic() + timeout_s
        while not self.try_lock():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)  # a commit holds it for one WAL write
        return True

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


def _claim_writer(path: Path) -> _Lockfile:
    """Hold ``writer.lock`` (with our pid in it) or raise :class:`StateStoreBusy`."""
    lock = _Lockfile(path / WRITER_LOCK)
    if not lock.try_lock():
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int((path / WRITER_LOCK).read_text().strip() or "0") or None
        lock.close()
        raise StateStoreBusy(str(path), pid)
    os.ftruncate(lock.fd, 0)
    os.pwrite(lock.fd, str(os.getpid()).encode(), 0)
    return lock


class RocksStateStore:
    """The processor's embedded state store (module docstring). ``sync``: fsync the WAL at
    every commit (False: a commit survives a crash of the process, not of the machine)."""

    exclusive = True  # only this process writes: committed values may be cached

    def __init__(
        self,
        path: str | Path,
        *,
        sync: bool = True,
        cache_mb: int = 64,
        write_buffer_mb: int = 64,
        compression: str = "lz4",
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._writer = _claim_writer(self.path)
        try:
            self.db: Any = open_db(
                self.path,
                options(
                    cache_mb=cache_mb, write_buffer_mb=write_buffer_mb, compression=compression
                ),
            )
        except Exception:
            self._writer.close()
            raise
        self.commit_lock = _Lockfile(self.path / COMMIT_LOCK)
        self.write_options: Any = rocksdict.WriteOptions()
        self.write_options.sync = sync
        self.lock = threading.RLock()
        self.closed = False

    def partition(self, partition: int) -> Partition[RocksTransaction]:
        return Partition(functools.partial(RocksTransaction, self), partition)

    def begin_global(self) -> RocksTransaction:
        return RocksTransaction(self, None)

    def reader(self) -> RocksLocalReader:
        return RocksLocalReader(self.db)

    def write(self, batch: rocksdict.WriteBatch) -> None:
        """Write ``batch`` under ``commit.lock`` (synced when the store syncs)."""
        self.commit_lock.lock()
        try:
            self.db.write(batch, self.write_options)
        finally:
            self.commit_lock.unlock()

    def compact(self) -> dict[str, Any]:
        """Rewrite the store so that erased pairs leave no bytes in any file of the directory.

        Flush the memtable (its WAL, holding the erasing deletes and what they deleted, is
        then obsolete), compact every level into the bottommost with tombstones dropped
        (``BottommostLevelCompaction.force``); that version edit starts a fresh MANIFEST
        listing only the compacted files (``max_manifest_file_size = 1``: the old one named
        the erased keys as files' boundaries). Waits until RocksDB has deleted the files that
        stopped being live (``RuntimeError`` if some are still there after 10 s: the privacy
        runner retries). Writers go on meanwhile. Returns what it did (files, seconds).
        """
        t0 = time.perf_counter()
        before = self._files()
        self.db.flush()
        compact = rocksdict.CompactOptions()
        compact.set_bottommost_level_compaction(rocksdict.BottommostLevelCompaction.force())
        compact.set_exclusive_manual_compaction(False)
        self.db.compact_range(None, None, compact)
        live = self._live()
        stale = {name for name in before - live if not name.endswith(".lock")}
        gone = self._wait_deleted(stale)
        if stale - gone:  # the regulation is not finished while they hold erased bytes
            raise RuntimeError(f"RocksDB kept obsolete files: {sorted(stale - gone)}")
        return {"seconds": round(time.perf_counter() - t0, 3), "files_removed": len(stale)}

    def _files(self) -> set[str]:
        return {p.name for p in self.path.iterdir() if p.is_file()}

    def _live(self) -> set[str]:
        """The files that must stay: live SSTs, current WAL(s), CURRENT's MANIFEST, ..."""
        ssts = {f["name"].lstrip("/") for f in self.db.live_files()}
        manifest = (self.path / "CURRENT").read_text().strip()
        keep = {"CURRENT", "IDENTITY", "LOCK", manifest, WRITER_LOCK, COMMIT_LOCK}
        keep.add("rocksdict-config.json")
        names = self._files()
        wals = sorted(n for n in names if n.endswith(".log"))
        options = sorted(n for n in names if n.startswith("OPTIONS-"))
        return (
            keep
            | ssts
            | set(wals[-1:])
            | set(options[-2:])
            | {n for n in names if n == "LOG" or n.startswith("LOG.old")}
        )

    def _wait_deleted(self, names: set[str], timeout_s: float = 10.0) -> set[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = names & self._files()
            if not left or time.monotonic() >= deadline:
                return names - left
            time.sleep(0.005)  # RocksDB purges obsolete files right after the job

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self.lock:
            self.db.close()
            del self.db
            self.commit_lock.close()
            self._writer.close()


class RocksTransaction(Offsets):
    """Holds the store's lock from construction to commit/rollback; writes in an overlay."""

    def __init__(self, store: RocksStateStore, partition: int | None) -> None:
        store.lock.acquire()
        self.store = store
        self.db: Any = store.db
        self.partition = partition
        self.pending: dict[bytes, bytes | None] = {}
        # the same writes by namespace, from the first scan on: a scan overlays only its
        # namespace's (a backfill step scans each profile's timeline while it writes thousands
        # of other keys); a processor batch, which scans nothing, does not keep it
        self.pending_by_ns: dict[str, dict[bytes, bytes | None]] | None = None
        self.seen: dict[bytes, bytes | None] = {}  # committed values read (stable: we lock)
        self.offsets: dict[int, int] = {}
        self.open = True

    def get(self, ns: str, key: str) -> bytes | None:
        k = f"{ns}{SEP}{key}".encode()
        if k in self.pending:
            return self.pending[k]
        if k in self.seen:
            return self.seen[k]
        value: bytes | None = self.db.get(k)
        self.seen[k] = value
        return value

    def prefetch(self, ns: str, keys: Iterable[str]) -> None:
        """Read many keys of ``ns`` with one multi-get (misses remembered as missing)."""
        todo = sorted({encode(ns, k) for k in keys} - self.pending.keys() - self.seen.keys())
        if todo:
            self.seen.update(zip(todo, self.db.get(todo), strict=True))

    def set(self, ns: str, key: str, value: bytes | None) -> None:
        """Write ``value`` at ``key`` of ``ns`` when the transaction commits (None deletes)."""
        k = f"{ns}{SEP}{key}".encode()
        self.pending[k] = value
        by_ns = self.pending_by_ns
        if by_ns is not None:
            found = by_ns.get(ns)
            if found is None:
                found = by_ns[ns] = {}
            found[k] = value

    def set_rows(
        self, ns: str, prefix: str, keys: Iterable[str], values: Iterable[bytes | None]
    ) -> None:
        """:meth:`set` of each value of ``values`` at ``prefix`` + the key of ``keys`` beside
        it, in that order, the prefix encoded once (a segment's member index rows,
        ``Batch.flush``)."""
        head = f"{ns}{SEP}{prefix}".encode()
        pending = self.pending
        by_ns = self.pending_by_ns
        mine = None if by_ns is None else by_ns.setdefault(ns, {})
        for key, value in zip(keys, values, strict=True):
            row = head + key.encode()
            pending[row] = value
            if mine is not None:
                mine[row] = value

    def delete(self, ns: str, key: str) -> None:
        self.set(ns, key, None)

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        lower, upper, skip = _bounds(ns, start, end)
        by_ns = self.pending_by_ns
        if by_ns is None:
            by_ns = self.pending_by_ns = {}
            for k, v in self.pending.items():
                by_ns.setdefault(k[: k.index(b"\0")].decode(), {})[k] = v
        written = by_ns.get(ns, {})
        mine = sorted(((k, v) for k, v in written.items() if lower <= k < upper), reverse=reverse)
        rows = scan_db(self.db, lower, upper, reverse)
        return _decode(merge(rows, mine, reverse, limit), skip)

    def committed(self, partition: int) -> int:
        value = self.db.get(offset_key(partition))
        return 0 if value is None else int(value)

    def commit(self) -> None:
        """One ``WriteBatch``: the overlay and the offsets, synced (module docstring)."""
        if not self.open:
            raise RuntimeError("the transaction is closed")
        try:
            if self.pending or self.offsets:
                batch = rocksdict.WriteBatch(raw_mode=True)
                put, delete = batch.put, batch.delete
                for k, v in self.pending.items():
                    if v is None:
                        delete(k)
                    else:
                        put(k, v)
                for partition, offset in self.offsets.items():
                    batch.put(offset_key(partition), str(offset).encode())
                self.store.write(batch)
        finally:
            self._end()

    def rollback(self) -> None:
        self._end()

    def _end(self) -> None:
        if self.open:
            self.open = False
            self.pending, self.pending_by_ns, self.seen, self.offsets = {}, None, {}, {}
            self.store.lock.release()


class RocksLocalReader:
    """Committed state through the primary's own handle (the writer's process)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def get(self, ns: str, key: str) -> bytes | None:
        value: bytes | None = self.db.get(encode(ns, key))
        return value

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        lower, upper, skip = _bounds(ns, start, end)
        rows = list(itertools.islice(scan_db(self.db, lower, upper, reverse), limit))
        return _decode(rows, skip)

    def offsets(self) -> dict[int, int]:
        """Every partition's committed next offset."""
        rows = scan_db(self.db, OFFSET_PREFIX, OFFSET_PREFIX + b"\xff", False)
        return {int(k[len(OFFSET_PREFIX) :]): int(v) for k, v in rows}

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every pair of the store as stored (encoded keys), in key order."""
        return iter(self.db.items())

    def close(self) -> None:
        return None


class RocksReader(RocksLocalReader):
    """Committed state from another process: a RocksDB secondary instance (its own info log in
    a temporary directory), caught up with the primary before every read. Thread-safe. Until
    a writer has created the store it reads as empty (and it never creates one itself).

    The following readers of one directory in one process share one secondary instance
    (:mod:`segflow.stream.state.secondary`: one copy of the replayed WAL, one block cache of
    ``READER_CACHE_MB``, one catch-up for all).

    ``follow=False`` catches up once, at open, and never again: a frozen, consistent view (a
    backup copies one; its instance is its own). ``refresh_ms`` > 0 catches up at most that
    often: a read then sees the commits made up to ``refresh_ms`` before it. A catch-up costs
    about 0.3 ms even when nothing changed (more while the processor commits), so the admin
    API's readers, which serve thousands of reads a second beside a busy processor, take 5 ms
    (``api.state_refresh_ms``); 0, the default, catches up before every read.

    >>> import tempfile
    >>> store = RocksStateStore(tempfile.mkdtemp(), sync=False)
    >>> reader = RocksReader(store.path, refresh_ms=60_000)
    >>> tx = store.begin_global(); tx.set("ns", "k", b"v"); tx.commit()
    >>> reader.get("ns", "k") is None  # caught up at open, and not again for a minute
    True
    >>> reader.refresh(); reader.get("ns", "k")
    b'v'
    >>> reader.close(); store.close()
    """

    def __init__(
        self,
        path: str | Path,
        *,
        follow: bool = True,
        refresh_ms: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.follow = follow
        self.refresh_s = max(0.0, refresh_ms) / 1000
        opener = functools.partial(_open_secondary, self.path)
        if follow:
            self.secondary = secondary.shared(self.path, opener)
        else:  # a frozen view of its own, never caught up again
            self.secondary = secondary.Secondary(str(self.path), opener)
        self.closed = False
        try:
            with self.secondary.lock:
                self.secondary.ready(0.0 if follow else float("inf"))  # caught up at open
        except Exception:
            self.close()
            raise

    @property
    def db(self) -> Any:
        return self.secondary.db

    def refresh(self) -> None:
        """Catch up with the primary now, whenever the last catch-up was."""
        with self.secondary.lock:
            self._ready(0.0)

    def _ready(self, refresh_s: float | None = None) -> bool:
        """Catch up (when following and ``refresh_s`` passed); False while there is no store
        to read. Called with the instance's lock held."""
        if not self.follow:
            return self.db is not None
        return self.secondary.ready(self.refresh_s if refresh_s is None else refresh_s)

    def get(self, ns: str, key: str) -> bytes | None:
        with self.secondary.lock:
            return super().get(ns, key) if self._ready() else None

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        with self.secondary.lock:
            if not self._ready():
                return []
            return super().scan(ns, start, end, reverse=reverse, limit=limit)

    def offsets(self) -> dict[int, int]:
        with self.secondary.lock:
            return super().offsets() if self._ready() else {}

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every pair of the store as stored (encoded keys), in key order."""
        return iter(()) if self.db is None else iter(self.db.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.follow:
            secondary.release(self.secondary)
        else:
            with self.secondary.lock:
                self.secondary.close()


@functools.lru_cache(maxsize=1)
def _reader_cache() -> rocksdict.Cache:
    """The block cache of this process's secondaries (``READER_CACHE_MB``, shared)."""
    return rocksdict.Cache(secondary.READER_CACHE_MB << 20)


def _open_secondary(path: Path, info_dir: str) -> Any:
    """A secondary instance of ``path`` caught up with its primary (``None`` while the store
    does not exist), its info log in ``info_dir``."""
    if not (path / "CURRENT").exists():
        return None
    opts = options(create=False, cache=_reader_cache())
    opts.set_max_open_files(-1)  # a secondary keeps every table file open
    db = open_db(path, opts, access_type=rocksdict.AccessType.secondary(info_dir))
    db.try_catch_up_with_primary()
    return db


class RocksReadOnlyStore:
    """The state of ``path`` for a process that does not write it (``serve`` without the
    ``process`` role): readers are secondaries; a transaction raises
    :class:`StateStoreReadOnly`."""

    exclusive = False

    def __init__(self, path: str | Path, *, refresh_ms: float = 0.0) -> None:
        self.path = Path(path)
        self.refresh_ms = refresh_ms  # of its readers (RocksReader)

    def partition(self, partition: int) -> Partition[RocksTransaction]:
        raise StateStoreReadOnly(str(self.path))

    def begin_global(self) -> RocksTransaction:
        raise StateStoreReadOnly(str(self.path))

    def reader(self) -> RocksReader:
        return open_reader(self.path, refresh_ms=self.refresh_ms)

    def close(self) -> None:
        return None


def open_reader(path: str | Path, *, follow: bool = True, refresh_ms: float = 0.0) -> RocksReader:
    """A secondary reader of ``path`` (empty until a writer creates the store)."""
    return RocksReader(path, follow=follow, refresh_ms=refresh_ms)


@contextlib.contextmanager
def commits_held(path: str | Path, *, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold ``commit.lock`` of ``path``: no commit is half-written, and none starts until the
    ``with`` block ends. A backup opens a frozen reader (``RocksReader(path, follow=False)``)
    inside, while it pins its other stores: all of them as of one instant. Raises
    ``TimeoutError`` when the lock is not had in ``timeout_s``."""
    lock = _Lockfile(Path(path) / COMMIT_LOCK)
    try:
        if not lock.lock(timeout_s):
            raise TimeoutError(f"cannot lock {lock.path} within {timeout_s:g} s")
        try:
            yield
        finally:
            lock.unlock()
    finally:
        lock.close()


def copy_state(reader: RocksLocalReader, target: str | Path, *, batch: int = 10_000) -> int:
    """Write every pair ``reader`` sees into a new RocksDB directory ``target`` (a logical,
    compacted copy: a backup of a frozen :class:`RocksReader`); returns the pairs copied.
    The copy has no info log, lock or WAL files: only what opening it needs."""
    target = Path(target)
    db: Any = open_db(target, options())
    unsynced: Any = rocksdict.WriteOptions()
    unsynced.disable_wal = True  # flushed (and fsynced) as SST files below
    count = 0
    try:
        pending = rocksdict.WriteBatch(raw_mode=True)
        for key, value in reader.items():
            pending.put(key, value)
            count += 1
            if pending.len() >= batch:
                db.write(pending, unsynced)
                pending = rocksdict.WriteBatch(raw_mode=True)
        if not pending.is_empty():
            db.write(pending, unsynced)
        db.flush()
    finally:
        db.close()
        del db
    for leftover in target.iterdir():
        if leftover.name == "LOCK" or leftover.name.startswith("LOG"):
            leftover.unlink()
    return count
