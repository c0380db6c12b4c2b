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

One process at a time builds (``seal.lock``, an ``flock``): it seals each full range of
``memory_ids`` ids, then merges ``FANIN`` neighbouring runs of one level into one of the next
(up to ``MAX_LEVEL``), so a 24-hour window holds a few dozen runs, not thousands. A run leaves
when its newest key is older than the window (its row and files are deleted; no ``DELETE`` of
keys). A crash between two steps leaves files nobody lists (removed at the next build) or a
listed run whose file is gone (rebuilt from ``dedupe_log``, which keeps every row of the window).

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
>>> tier = SealedTier(files); tier.refresh(con); tier.sealed_upto
8
>>> tier.lookup([dedupe_key("s", "5"), dedupe_key("s", "9")])
[5, None]
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

    def remove_unlisted(self, runs: list[Run]) -> None:
        """Delete what a crash left: build leftovers and runs nobody lists (under the lock)."""
        keep = {p.name for r in runs for p in (self.db(r), self.bloom(r))}
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name.startswith((".seal-", "run-")) and path.name not in keep:
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
    """One process's view of the runs: opened as they are listed, probed a batch at a time."""

    def __init__(self, files: RunFiles) -> None:
        self._files = files
        self._open: dict[str, _OpenRun] = {}
        self.sealed_upto = 0
        self.runs: list[Run] = []
        self.probes = 0  # keys looked up on disk (a filter said "maybe"), for tests and stats

    def refresh(self, con: sqlite3.Connection) -> None:
        """Follow the list of runs as of ``con``'s snapshot."""
        self.sealed_upto, runs = read_registry(con)
        if runs == self.runs:
            return
        listed = {r.name for r in runs}
        for name in [n for n in self._open if n not in listed]:
            self._open.pop(name).con.close()
        for run in runs:
            if run.name not in self._open:
                self._open[run.name] = self._opened(run)
        self.runs = runs

    def _opened(self, run: Run) -> _OpenRun:
        if not (self._files.db(run).exists() and self._files.bloom(run).exists()):
            logger.warning("dedupe run %s is missing: rebuilding it from dedupe_log", run.name)
            self._files.build_from_log(
                run.lo, run.hi, level=run.level, tag=f"rebuild-{os.getpid()}"
            )
        return _OpenRun(self._files, run)

    def lookup(self, keys: list[bytes], *, floor_ms: int | None = None) -> list[int | None]:
        """Per key, the newest ``received_at_ms`` a run holds for it (None: in no run).
        Runs whose newest key is older than ``floor_ms`` are skipped."""
        best: list[int | None] = [None] * len(keys)
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

    def remove_files(self, runs: list[Run]) -> None:
        """Delete the files of runs no longer listed (processes that opened them keep reading)."""
        self._files.remove(runs)

    def close(self) -> None:
        for opened in self._open.values():
            opened.con.close()
        self._open.clear()
        self.runs = []


class Sealer:
    """Builds runs for the log at ``files.log_path`` (see the module docstring): call
    :meth:`build`, or :meth:`start` a thread that builds whenever :meth:`wake` is called."""

    def __init__(self, files: RunFiles, *, memory_ids: int) -> None:
        self._files = files
        self._memory_ids = memory_ids
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def build(self, *, wait: bool = False) -> bool:
        """Seal every full range, then merge; False when another process holds the lock."""
        self._files.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._files.directory / "seal.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return False
            con = connect(self._files.log_path)
            try:
                ensure_registry(con)
                self._files.remove_unlisted(read_registry(con)[1])
                while self._seal_next(con) or self._merge_next(con):
                    if self._stopping:
                        break
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
        return True

    def _merge_next(self, con: sqlite3.Connection) -> bool:
        group = mergeable(read_registry(con)[1])
        if not group:
            return False
        merged = self._files.build_from_runs(group)
        with _immediate(con):
            gone = con.executemany("DELETE FROM dedupe_runs WHERE lo=?", [(r.lo,) for r in group])
            if gone.rowcount == len(group):
                con.execute("INSERT INTO dedupe_runs VALUES(?,?,?,?,?)", _row(merged))
        # an input expired meanwhile: the merged run is not listed, its files go below
        self._files.remove(group if gone.rowcount == len(group) else [merged])
        return True

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="segflow-dedupe-sealer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.build()
            except Exception:  # the memory tier keeps the ids meanwhile; retried at next wake
                if not self._stopping:
                    logger.exception("sealing dedupe runs failed")

    def close(self) -> None:
        """Stop the thread, interrupting a seal or merge in progress (a long merge must not
        hold up a shutdown)."""
        self._stopping = True
        self._wake.set()
        self._files.interrupt()
        if self._thread is not None:
            self._thread.join()


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
