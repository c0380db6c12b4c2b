"""The sealed tier of the embedded log's dedupe index: immutable sorted runs on disk.

``dedupe_log`` (in ``log.sqlite``) stays the truth; a **run** is a copy of the keys of one id
range ``(lo, hi]`` of it, sorted, in its own SQLite file (``keys(key, received_at_ms) WITHOUT
ROWID``, built by one ``INSERT ... SELECT ... GROUP BY key ORDER BY key``: a sequential B-tree
build), with a :class:`~segflow.log.bloom.BloomFilter` saved beside it. Files live in
``DIR/<log stem>.dedupe/`` and are published by ``os.replace``; the list of runs is the table
``dedupe_runs`` of ``log.sqlite`` and ``dedupe_sealed.upto`` is where the sealed ids end, both
changed in short write transactions *after* the files are in place. Every process reads the
list at the start of its append transaction (the same snapshot as its ``dedupe_log``
catch-up), opens the new runs (``immutable=1``; the filter memory-mapped, so processes share its
pages) and forgets the sealed rows of its in-memory tier.

One process at a time seals (``seal.lock``, an ``flock``): each full range of ``memory_ids`` ids
becomes a run of level 0. One process at a time merges (``merge.lock``, in its own thread, so
that a seal never waits behind a long merge): ``FANIN`` neighbouring runs of one level become one
of the next (up to ``MAX_LEVEL``), so a 24-hour window holds a few dozen runs, not thousands. A
run leaves when its newest key is older than the window (its row and files are deleted; no
``DELETE`` of keys). A crash between two steps leaves files nobody lists (removed by the next
seal or merge) or a listed run whose files are gone (a restore of ``log.sqlite`` alone).

A listed run whose files are missing is **rebuilt off the append path**: the merging thread
rebuilds it from ``dedupe_log`` (which keeps every row of the window), smallest first, before it
merges. Meanwhile :meth:`SealedTier.lookup` answers for that run's ids by querying
``dedupe_log`` for its id range, in the caller's transaction: correct, at the cost of scanning
the range once per append group until the files are back.

>>> import os, tempfile
>>> from segflow.db.sqlite import connect
>>> from segflow.log.dedupe import dedupe_key
>>> path = os.path.join(tempfile.mkdtemp(), "log.sqlite")
>>> con = connect(path)
>>> _ = con.execute("CREATE TABLE dedupe_log(id INTEGER PRIMARY KEY, key BLOB, received_at_ms INT)")
>>> _ = con.executemany("INSERT INTO dedupe_log(key, received_at_ms) VALUES(?, ?)",
...                     [(dedupe_key("s", str(i)), i) for i in range(10)])
>>> files = RunFiles(path)
>>> Sealer(files, memory_ids=4).build()  # two runs of 4 ids; ids 9 and 10 stay in memory
True
>>> tier = SealedTier(files); tier.refresh(con); tier.sealed_upto, tier.missing
(8, [])
>>> tier.lookup([dedupe_key("s", "5"), dedupe_key("s", "9")])
[5, None]
>>> tier.close(); files.db(read_registry(con)[1][0]).unlink()  # a lost file
>>> tier.refresh(con); [r.name for r in tier.missing]  # answered from dedupe_log meanwhile
['run-000000000000-000000000004-0']
>>> tier.lookup([dedupe_key("s", "2"), dedupe_key("s", "9")]), tier.log_lookups
([2, None], 2)
>>> tier.close(); con.close()
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from segflow.db.files import fsync_path
from segflow.db.sqlite import connect
from segflow.log.bloom import BloomFilter, key_array, masks_of

REGISTRY = (
    "CREATE TABLE IF NOT EXISTS dedupe_runs(lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL,"
    " level INTEGER NOT NULL, keys INTEGER NOT NULL, max_received_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dedupe_sealed(one INTEGER PRIMARY KEY CHECK(one = 0),"
    " upto INTEGER NOT NULL)",
)
FANIN = 4
MAX_LEVEL = 4
_CHUNK = 1_000_000  # keys per read while building a filter
_IN = 500  # keys per ``IN (...)`` probe
_LOG_CHUNK = 100_000  # ids of a missing run's range of ``dedupe_log`` read at a time
logger = logging.getLogger("segflow.log.dedupe")


@dataclass(frozen=True)
class Run:
    """The ids ``(lo, hi]`` of ``dedupe_log``, sealed: ``keys`` distinct keys, the newest
    received at ``max_received_ms``."""

    lo: int
    hi: int
    level: int
    keys: int
    max_received_ms: int

    @property
    def name(self) -> str:
        return f"run-{self.lo:012d}-{self.hi:012d}-{self.level}"


def ensure_registry(con: sqlite3.Connection) -> None:
    for stmt in REGISTRY:
        con.execute(stmt)


def unsealed_ids(con: sqlite3.Connection) -> int:
    """How many ids of ``dedupe_log`` are past the sealed runs (held in memory once read)."""
    last = con.execute("SELECT coalesce(max(id), 0) FROM dedupe_log").fetchone()[0]
    return int(last) - read_registry(con)[0]


def read_registry(con: sqlite3.Connection) -> tuple[int, list[Run]]:
    """``(sealed upto, the runs by id)`` as of ``con``'s snapshot."""
    row = con.execute("SELECT upto FROM dedupe_sealed").fetchone()
    runs = [Run(*r) for r in con.execute("SELECT * FROM dedupe_runs ORDER BY lo")]
    return (int(row[0]) if row else 0), runs


def expire_runs(con: sqlite3.Connection, horizon_ms: int) -> list[Run]:
    """Unlist the runs whose every key is older than ``horizon_ms`` (in the caller's
    transaction); the caller deletes their files once it committed."""
    runs = [
        Run(*r)
        for r in con.execute("SELECT * FROM dedupe_runs WHERE max_received_ms < ?", (horizon_ms,))
    ]
    con.executemany("DELETE FROM dedupe_runs WHERE lo=?", [(r.lo,) for r in runs])
    return runs


class RunFiles:
    """Where the runs of the log at ``log_path`` live, and how one is built and published."""

    def __init__(self, log_path: str | Path) -> None:
        self.log_path = Path(log_path)
        self.directory = self.log_path.with_name(self.log_path.stem + ".dedupe")
        self._building: sqlite3.Connection | None = None

    def interrupt(self) -> None:
        """Stop the build in progress (its statement raises; its files are left to the next
        build's clean-up)."""
        building = self._building
        if building is not None:
            building.interrupt()

    def db(self, run: Run) -> Path:
        return self.directory / f"{run.name}.sqlite"

    def bloom(self, run: Run) -> Path:
        return self.directory / f"{run.name}.bloom"

    def build_from_log(self, lo: int, hi: int, *, level: int = 0, tag: str = "seal") -> Run:
        """Seal ``dedupe_log`` ids ``(lo, hi]`` (read from a snapshot; the log stays writable)."""

        def fill(con: sqlite3.Connection) -> None:
            con.execute("ATTACH DATABASE ? AS log", (str(self.log_path),))
            con.execute(
                "INSERT INTO keys SELECT key, max(received_at_ms) FROM log.dedupe_log"
                " WHERE id > ? AND id <= ? GROUP BY key ORDER BY key",
                (lo, hi),
            )

        return self._build(lo, hi, level, fill, tag)

    def build_from_runs(self, runs: list[Run], *, tag: str = "seal") -> Run:
        """One run of the next level holding the keys of ``runs`` (neighbours, by id)."""

        def fill(con: sqlite3.Connection) -> None:
            for i, run in enumerate(runs):  # read-only: a run gone meanwhile fails the merge
                uri = f"{self.db(run).resolve().as_uri()}?mode=ro&immutable=1"
                con.execute(f"ATTACH DATABASE ? AS r{i}", (uri,))
            union = " UNION ALL ".join(
                f"SELECT key, received_at_ms FROM r{i}.keys" for i in range(len(runs))
            )
            # each input is sorted by key: SQLite merges them (``MERGE (UNION ALL)``), no sort;
            # a key in two inputs (stored again after a window passed) keeps its newest time
            con.execute(
                f"INSERT INTO keys SELECT key, received_at_ms FROM ({union} ORDER BY key) WHERE true"
                " ON CONFLICT(key) DO UPDATE SET"
                " received_at_ms=max(received_at_ms, excluded.received_at_ms)"
            )

        level = max(r.level for r in runs) + 1
        return self._build(runs[0].lo, runs[-1].hi, level, fill, tag)

    def _build(
        self, lo: int, hi: int, level: int, fill: Callable[[sqlite3.Connection], None], tag: str
    ) -> Run:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = Run(lo, hi, level, 0, 0).name
        tmp_db = self.directory / f".{tag}-{name}.sqlite"
        tmp_bloom = self.directory / f".{tag}-{name}.bloom"
        tmp_db.unlink(missing_ok=True)
        con = sqlite3.connect(tmp_db.resolve().as_uri(), isolation_level=None, uri=True)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            con.execute("PRAGMA busy_timeout=10000")
            con.execute("PRAGMA cache_size=-16384")  # the seal's sort: 16 MB, then temp files
            con.execute(
                "CREATE TABLE keys(key BLOB PRIMARY KEY, received_at_ms INTEGER NOT NULL)"
                " WITHOUT ROWID"
            )
            con.execute("BEGIN")
            self._building = con
            try:
                fill(con)
            finally:
                self._building = None
            con.execute("COMMIT")
            count, newest = con.execute(
                "SELECT count(*), coalesce(max(received_at_ms), 0) FROM keys"
            ).fetchone()
            bloom = BloomFilter.build(key_array(b""), capacity=int(count))
            for blob in _key_chunks(con):
                bloom.add(key_array(blob))
        finally:
            con.close()
        run = Run(lo, hi, level, int(count), int(newest))
        fsync_path(tmp_db)
        bloom.save(tmp_bloom)
        os.replace(tmp_bloom, self.bloom(run))
        os.replace(tmp_db, self.db(run))
        fsync_path(self.directory)
        return run

    def remove(self, runs: list[Run]) -> None:
        for run in runs:
            self.db(run).unlink(missing_ok=True)
            self.bloom(run).unlink(missing_ok=True)

    def exist(self, run: Run) -> bool:
        """Are both files of ``run`` in place?"""
        return self.db(run).exists() and self.bloom(run).exists()

    def remove_unlisted(self, runs: list[Run], *, merged: bool = False) -> None:
        """Delete what a crash left: build leftovers and runs nobody lists. The sealer (under
        ``seal.lock``) removes seal leftovers and runs of level 0; the merger (``merged``, under
        ``merge.lock``) merge and rebuild leftovers and runs of higher levels: neither touches
        what the other may be publishing."""
        keep = {p.name for r in runs for p in (self.db(r), self.bloom(r))}
        leftovers = (".merge-", ".rebuild-") if merged else (".seal-",)
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                name = path.name
                if name in keep:
                    continue
                if name.startswith("run-"):
                    if (Path(name).stem.rsplit("-", 1)[-1] != "0") is merged:
                        path.unlink(missing_ok=True)
                elif name.startswith(leftovers):
                    path.unlink(missing_ok=True)


def _key_chunks(con: sqlite3.Connection) -> Iterator[bytes]:
    """The keys of a run in key order, ``_CHUNK`` at a time, each chunk one bytes object."""
    last = b""
    while True:
        blob = con.execute(
            "SELECT CAST(group_concat(key, '') AS BLOB) FROM"
            " (SELECT key FROM keys WHERE key > ? ORDER BY key LIMIT ?)",
            (last, _CHUNK),
        ).fetchone()[0]
        if not blob:
            return
        yield blob
        last = blob[-16:]


class _OpenRun:
    def __init__(self, files: RunFiles, run: Run) -> None:
        self.run = run
        self.bloom = BloomFilter.open(files.bloom(run))
        self.con = sqlite3.connect(
            f"file:{files.db(run)}?immutable=1", uri=True, check_same_thread=False
        )

    def stored(self, keys: list[bytes]) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        for start in range(0, len(keys), _IN):
            chunk = keys[start : start + _IN]
            rows = self.con.execute(
                f"SELECT key, received_at_ms FROM keys WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            out.update(rows)
        return out


class SealedTier:
    """One process's view of the runs: opened as they are listed, probed a batch at a time.

    A listed run whose files are missing is in :attr:`missing` (``on_missing()`` is called:
    the log wakes its merging thread, which rebuilds it) and is answered from ``dedupe_log``
    through the connection last given to :meth:`refresh` (the append transaction's) until its
    files are back.
    """

    def __init__(self, files: RunFiles, *, on_missing: Callable[[], None] | None = None) -> None:
        self._files = files
        self._on_missing = on_missing
        self._open: dict[str, _OpenRun] = {}
        self._log: sqlite3.Connection | None = None
        self.sealed_upto = 0
        self.runs: list[Run] = []
        self.missing: list[Run] = []
        self.probes = 0  # keys looked up on disk (a filter said "maybe"), for tests and stats
        self.log_lookups = 0  # keys looked up in ``dedupe_log`` for a missing run

    def refresh(self, con: sqlite3.Connection) -> None:
        """Follow the list of runs as of ``con``'s snapshot (and open rebuilt ones)."""
        self._log = con
        self.sealed_upto, runs = read_registry(con)
        if runs == self.runs and not self.missing:
            return
        listed = {r.name for r in runs}
        for name in [n for n in self._open if n not in listed]:
            self._open.pop(name).con.close()
        missing: list[Run] = []
        for run in runs:
            if run.name in self._open:
                continue
            if self._files.exist(run):
                self._open[run.name] = _OpenRun(self._files, run)
            else:
                missing.append(run)
        self.runs, self.missing = runs, missing
        if missing and self._on_missing is not None:
            self._on_missing()

    def lookup(self, keys: list[bytes], *, floor_ms: int | None = None) -> list[int | None]:
        """Per key, the newest ``received_at_ms`` a run holds for it (None: in no run).
        Runs whose newest key is older than ``floor_ms`` are skipped."""
        best: list[int | None] = [None] * len(keys)
        if keys and self.missing:
            self._lookup_in_log(keys, best, floor_ms)
        if not keys or not self._open:
            return best
        array = key_array(keys)
        masks = masks_of(array)
        for opened in self._open.values():
            if floor_ms is not None and opened.run.max_received_ms < floor_ms:
                continue
            maybe = opened.bloom.may_contain(array, masks).nonzero()[0].tolist()
            if not maybe:
                continue
            self.probes += len(maybe)
            stored = opened.stored([keys[i] for i in maybe])
            for i in maybe:
                s = stored.get(keys[i])
                if s is not None and (best[i] is None or s > best[i]):  # type: ignore[operator]
                    best[i] = s
        return best

    def _lookup_in_log(self, keys: list[bytes], best: list[int | None], floor: int | None) -> None:
        """The missing runs' part of :meth:`lookup`. ``dedupe_log`` has no index on ``key``:
        each run's ids are read ``_LOG_CHUNK`` at a time as one blob of keys (SQLite's
        ``group_concat``, no Python object per row), matched by their first 8 bytes in numpy,
        and only a chunk holding a match is queried for the exact keys and their times."""
        assert self._log is not None, "refresh() gives the connection"
        probe = np.unique(key_array(keys)[:, 0])
        found: dict[bytes, int] = {}
        for run in self.missing:
            if floor is not None and run.max_received_ms < floor:
                continue
            self.log_lookups += len(keys)
            for lo in range(run.lo, run.hi, _LOG_CHUNK):
                hi = min(lo + _LOG_CHUNK, run.hi)
                blob = self._log.execute(
                    "SELECT CAST(group_concat(key, '') AS BLOB) FROM dedupe_log"
                    " WHERE id > ? AND id <= ?",
                    (lo, hi),
                ).fetchone()[0]
                if blob:
                    self._confirm(keys, probe, key_array(blob)[:, 0], (lo, hi), found)
        for i, key in enumerate(keys):
            if key in found:
                best[i] = found[key]

    def _confirm(
        self,
        keys: list[bytes],
        probe: npt.NDArray[np.uint64],
        stored: npt.NDArray[np.uint64],
        ids: tuple[int, int],
        found: dict[bytes, int],
    ) -> None:
        at = np.minimum(np.searchsorted(probe, stored), len(probe) - 1)
        prefixes = set(stored[probe[at] == stored].tolist())
        if not prefixes:
            return
        assert self._log is not None
        maybe = [k for k in keys if int.from_bytes(k[:8], "little") in prefixes]
        for start in range(0, len(maybe), _IN):
            chunk = maybe[start : start + _IN]
            rows = self._log.execute(
                "SELECT key, max(received_at_ms) FROM dedupe_log WHERE id > ? AND id <= ?"
                f" AND key IN ({','.join('?' * len(chunk))}) GROUP BY key",
                (*ids, *chunk),
            )
            for key, received in rows:
                found[key] = max(received, found.get(key, received))

    def remove_files(self, runs: list[Run]) -> None:
        """Delete the files of runs no longer listed (processes that opened them keep reading)."""
        self._files.remove(runs)

    def close(self) -> None:
        for opened in self._open.values():
            opened.con.close()
        self._open.clear()
        self.runs, self.missing = [], []


class Sealer:
    """Builds runs for the log at ``files.log_path`` (see the module docstring): call
    :meth:`build` (or :meth:`seal`, :meth:`merge`), or :meth:`start` two threads, one sealing
    whenever :meth:`wake_seal` is called, one rebuilding and merging on :meth:`wake_merge`."""

    def __init__(self, files: RunFiles, *, memory_ids: int) -> None:
        self._files = files
        self._merge_files = RunFiles(files.log_path)  # its own build, interrupted apart
        self._memory_ids = memory_ids
        self._seal_wake = threading.Event()
        self._merge_wake = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def build(self, *, wait: bool = False) -> bool:
        """Seal every full range, then rebuild and merge; False when another process holds
        either lock."""
        sealed = self.seal(wait=wait)
        return self.merge(wait=wait) and sealed

    def seal(self, *, wait: bool = False) -> bool:
        """Seal every full range (under ``seal.lock``); False when another process holds it."""
        return self._locked("seal.lock", self._files, self._seal_next, wait=wait)

    def merge(self, *, wait: bool = False) -> bool:
        """Rebuild the listed runs whose files are missing, then merge (under ``merge.lock``);
        False when another process holds it."""
        return self._locked("merge.lock", self._merge_files, self._rebuild_or_merge, wait=wait)

    def _locked(
        self,
        lock: str,
        files: RunFiles,
        step: Callable[[sqlite3.Connection], bool],
        *,
        wait: bool,
    ) -> bool:
        files.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(files.directory / lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return False
            con = connect(files.log_path)
            try:
                ensure_registry(con)
                files.remove_unlisted(read_registry(con)[1], merged=files is self._merge_files)
                while step(con) and not self._stopping:
                    pass
            finally:
                con.close()
            return True
        finally:
            os.close(fd)  # releases the lock

    def _seal_next(self, con: sqlite3.Connection) -> bool:
        upto, _ = read_registry(con)
        hi = (upto // self._memory_ids + 1) * self._memory_ids
        if con.execute("SELECT coalesce(max(id), 0) FROM dedupe_log").fetchone()[0] < hi:
            return False
        run = self._files.build_from_log(upto, hi)
        with _immediate(con):
            if run.keys:
                con.execute("INSERT INTO dedupe_runs VALUES(?,?,?,?,?)", _row(run))
            con.execute("INSERT OR REPLACE INTO dedupe_sealed VALUES(0, ?)", (hi,))
        if not run.keys:
            self._files.remove([run])
        self._merge_wake.set()  # four runs of a level may be ready
        return True

    def _rebuild_or_merge(self, con: sqlite3.Connection) -> bool:
        return self._rebuild_next(con) or self._merge_next(con)

    def _rebuild_next(self, con: sqlite3.Connection) -> bool:
        missing = [r for r in read_registry(con)[1] if not self._merge_files.exist(r)]
        if not missing:
            return False
        run = min(missing, key=lambda r: r.hi - r.lo)  # the most ids back soonest
        logger.warning("dedupe run %s is missing: rebuilding it from dedupe_log", run.name)
        self._merge_files.build_from_log(run.lo, run.hi, level=run.level, tag="rebuild")
        return True

    def _merge_next(self, con: sqlite3.Connection) -> bool:
        group = mergeable(read_registry(con)[1])
        if not group:
            return False
        merged = self._merge_files.build_from_runs(group, tag="merge")
        with _immediate(con):
            gone = con.executemany("DELETE FROM dedupe_runs WHERE lo=?", [(r.lo,) for r in group])
            if gone.rowcount == len(group):
                con.execute("INSERT INTO dedupe_runs VALUES(?,?,?,?,?)", _row(merged))
        # an input expired meanwhile: the merged run is not listed, its files go below
        self._merge_files.remove(group if gone.rowcount == len(group) else [merged])
        return True

    def wake(self) -> None:
        """Wake both threads (a seal or a merge another process left undone)."""
        self.wake_seal()
        self.wake_merge()

    def wake_seal(self) -> None:
        self._seal_wake.set()

    def wake_merge(self) -> None:
        self._merge_wake.set()

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        """Start the sealing and the merging threads (once; later calls do nothing)."""
        if self._threads or self._stopping:
            return
        self._threads = [
            threading.Thread(
                target=self._run, args=(wake, work), name=f"segflow-dedupe-{name}", daemon=True
            )
            for name, wake, work in (
                ("sealer", self._seal_wake, self.seal),
                ("merger", self._merge_wake, self.merge),
            )
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, wake: threading.Event, work: Callable[[], bool]) -> None:
        while not self._stopping:
            wake.wait()
            wake.clear()
            if self._stopping:
                return
            try:
                work()
            except Exception:  # the other tiers keep the ids meanwhile; retried at next wake
                if not self._stopping:
                    logger.exception("building dedupe runs failed")

    def close(self) -> None:
        """Stop the threads, interrupting a seal, rebuild or merge in progress (a long merge
        must not hold up a shutdown)."""
        self._stopping = True
        self.wake()
        self._files.interrupt()
        self._merge_files.interrupt()
        for thread in self._threads:
            thread.join()


def mergeable(runs: list[Run]) -> list[Run]:
    """The oldest ``FANIN`` neighbouring runs of one level below ``MAX_LEVEL`` (or none).

    >>> mergeable([Run(i, i + 1, 0, 1, 0) for i in range(5)])[-1].hi
    4
    """
    for start in range(len(runs) - FANIN + 1):
        group = runs[start : start + FANIN]
        level = group[0].level
        if level < MAX_LEVEL and all(r.level == level for r in group):
            return group
    return []


@contextlib.contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[None]:
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _row(run: Run) -> tuple[int, int, int, int, int]:
    return (run.lo, run.hi, run.level, run.keys, run.max_received_ms)


__all__ = [
    "FANIN",
    "MAX_LEVEL",
    "Run",
    "RunFiles",
    "SealedTier",
    "Sealer",
    "ensure_registry",
    "expire_runs",
    "mergeable",
    "read_registry",
    "unsealed_ids",
]
