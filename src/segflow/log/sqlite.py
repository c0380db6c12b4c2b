"""The embedded log driver: one SQLite file (WAL, ``synchronous=FULL``), group commit.

Layout of ``log.sqlite``:

- ``records(partition, offset, appended_at_ms, payload)``: the events, msgpack-encoded;
- ``partitions(partition, next_offset)``: the next offset per partition, kept in the same
  transaction as the records so offsets never go backwards, even after retention;
- ``dedupe_log(id, key, received_at_ms)``: the dedupe index, append-only, looked up in memory
  and, once sealed, in sorted runs under ``<stem>.dedupe/`` (``segflow.log.dedupe``,
  ``segflow.log.dedupe_runs``, listed in ``dedupe_runs`` and ``dedupe_sealed``);
- ``consumer_offsets(grp, partition, offset)``: committed offsets of named consumers;
- ``dead_letters``: refused payloads with their reason.

One writer thread owns the write transaction; other processes (``segflow import`` while
``segflow serve`` runs) may append too: each transaction re-reads the next offsets under
SQLite's write lock. Callers put appends on a queue; the writer takes
every append waiting, writes them in **one** transaction, commits (one fsync of the WAL for the
whole group) and only then resolves each caller's future. The dedupe check and the append happen
in that same transaction, so they are atomic.

>>> import os, tempfile
>>> from segflow.spec import Event
>>> log = SqliteEventLog(os.path.join(tempfile.mkdtemp(), "log.sqlite"), partitions=4)
>>> e = Event(type="track", message_id="m1", source_id="s", timestamp_ms=1, received_at_ms=1,
...           user_id="u1", event="Signed Up")
>>> log.append([e, e])[1] is None   # the same messageId twice: stored once
True
>>> [r.event.message_id for r in log.read(log.partition_of(e), 0)]
['m1']
>>> log.close()
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from segflow.clock import DAY_MS, Clock, WallClock
from segflow.db.sqlite import connect, vacuum
from segflow.log.base import DeadLetter, Position, Record, partition_for
from segflow.log.bell import Bell
from segflow.log.dedupe import DEFAULT_MEMORY_IDS, DedupeIndex, dedupe_keys, ensure_tables
from segflow.log.dedupe_runs import RunFiles, SealedTier, Sealer, unsealed_ids
from segflow.log.exceptions import LogWriteFailed
from segflow.log.queued import PendingAppend, QueuedAppends
from segflow.spec.events import decode_event

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS partitions(partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS records(partition INTEGER NOT NULL, offset INTEGER NOT NULL,"
    " appended_at_ms INTEGER NOT NULL, payload BLOB NOT NULL, PRIMARY KEY(partition, offset)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS consumer_offsets(grp TEXT NOT NULL, partition INTEGER NOT NULL,"
    " offset INTEGER NOT NULL, PRIMARY KEY(grp, partition)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS dead_letters(id INTEGER PRIMARY KEY, source_id TEXT NOT NULL,"
    " received_at_ms INTEGER NOT NULL, message_id TEXT, field TEXT NOT NULL, reason TEXT NOT NULL,"
    " payload BLOB NOT NULL)",
)
READ_MMAP_BYTES = 1 << 33
"""How much of the file ``read_payloads``' connection maps (SQLite caps it at its build's maximum)."""
logger = logging.getLogger("segflow.log")


class SqliteEventLog(QueuedAppends):
    """The embedded :class:`~segflow.log.base.EventLog` driver (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        partitions: int = 8,
        dedupe_window_ms: int = DAY_MS,
        dedupe_memory_ids: int = DEFAULT_MEMORY_IDS,
        max_pending_events: int = 200_000,
        max_group_events: int = 20_000,
        clock: Clock | None = None,
    ) -> None:
        self._path = Path(path)
        self._dedupe_window_ms = dedupe_window_ms
        self._clock = clock or WallClock()
        self._write = connect(self._path)
        self._write.execute("PRAGMA cache_size=-65536")  # keep the dedupe index's pages hot
        self._read = connect(self._path)
        # timelines read back (a backfill, a split) are random reads across the whole log
        self._read.execute("PRAGMA cache_size=-65536")
        self._mapped: sqlite3.Connection | None = None  # read_payloads' (opened at first use)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        partitions = self._init_schema(partitions)
        self._init_appends(
            partitions=partitions, max_pending=max_pending_events, waiting_for="the disk"
        )
        self._dedupe_memory_ids = dedupe_memory_ids
        self._run_files = RunFiles(self._path)
        self._sealer = Sealer(self._run_files, memory_ids=dedupe_memory_ids)
        # a seal, merge or rebuild another process left undone: from the first append on
        # (:meth:`_write_group` starts the threads; a process that only reads never does)
        self._sealer.wake()
        self._index: DedupeIndex | None = None  # built at the first append (_dedupe_index)
        self._next = self._load_next_offsets()
        self._commits = 0
        self._listeners: list[Callable[[], None]] = []
        self._bell = Bell(self._path)  # other processes' processors hear our commits
        self._start_writer(
            "segflow-log-writer", max_events=max_group_events, max_appends=max_group_events
        )

    # -- setup -------------------------------------------------------------------------------

    def _init_schema(self, partitions: int) -> int:
        with self._write_lock:
            self._write.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA:
                self._write.execute(stmt)
            ensure_tables(self._write)
            row = self._write.execute("SELECT value FROM meta WHERE key='partitions'").fetchone()
            if row is None:
                self._write.execute("INSERT INTO meta VALUES('partitions', ?)", (str(partitions),))
                self._write.executemany(
                    "INSERT INTO partitions VALUES(?, 0)", [(p,) for p in range(partitions)]
                )
            self._write.execute("COMMIT")
        return partitions if row is None else int(row[0])

    @property
    def _dedupe(self) -> DedupeIndex:
        """The dedupe index, built at this process's first append: a process that only reads
        the log (the ``pipeline`` and ``activate`` children of ``segflow serve``, a backup)
        never holds the window's ids in memory (up to ~2 x ``dedupe_memory_ids``) nor spends
        its start-up reading them. Called by the writer thread outside ``_write_lock``."""
        if self._index is None:
            memory_ids = self._dedupe_memory_ids
            with self._write_lock:
                unsealed = unsealed_ids(self._write)
            if unsealed > 2 * memory_ids:  # a log from before sealed runs
                self._sealer.seal(wait=True)
            with self._write_lock:
                self._index = DedupeIndex(
                    self._write,
                    window_ms=self._dedupe_window_ms,
                    memory_ids=memory_ids,
                    runs=SealedTier(self._run_files, on_missing=self._sealer.wake_merge),
                    on_full=self._sealer.wake_seal,
                )
        return self._index

    def _load_next_offsets(self) -> list[int]:
        rows = dict(self._write.execute("SELECT partition, next_offset FROM partitions").fetchall())
        return [int(rows[p]) for p in range(self._partitions)]

    # -- properties --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def sealing(self) -> bool:
        """Does this process run the dedupe index's sealing threads (it appended)?"""
        return self._sealer.started

    @property
    def commits(self) -> int:
        """Group commits written since the log was opened (one fsync each)."""
        return self._commits

    # -- appending ---------------------------------------------------------------------------

    def _write_group(self, group: list[PendingAppend]) -> None:
        self._sealer.start()  # this process appends: it seals, merges and rebuilds runs too
        try:
            dedupe = self._dedupe  # built before the lock is taken (the first group builds it)
        except Exception as exc:  # a failed build fails this group; the next one tries again
            self._failed(group, exc)
            return
        snapshot = list(self._next)
        with self._write_lock:
            try:
                results = self._insert_group(group)
            except Exception as exc:  # every failure must reach the waiting callers
                self._next = snapshot
                self._rollback()
                dedupe.discarded()
                self._failed(group, exc)
                return
        for pending, result in zip(group, results, strict=True):
            self._settle(pending, result, None)
        if not self._bell.listening:  # held here: the listeners below are the bell's
            self._bell.ring()
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                logger.exception("a log commit listener failed")

    def _failed(self, group: list[PendingAppend], exc: Exception) -> None:
        """Answer every append of ``group`` with the failure (retryable)."""
        if not isinstance(exc, sqlite3.Error):
            logger.exception("unexpected error in the log writer")
        error = LogWriteFailed(f"the log write failed: {exc}", retry_after_s=1.0)
        for pending in group:
            self._settle(pending, None, error)

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each group commit, this process's or another's on the same
        file (:mod:`segflow.log.bell`): ``segflow serve`` wakes its processor with it instead
        of letting it sleep its idle poll interval."""
        self._listeners.append(listener)
        self._bell.listen(listener)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._write.execute("ROLLBACK")

    def _insert_group(self, group: list[PendingAppend]) -> list[list[Position | None]]:
        con = self._write
        con.execute("BEGIN IMMEDIATE")
        # another process (``segflow import``) may have appended since our last commit
        self._next = self._load_next_offsets()
        self._dedupe.catch_up()
        records: list[tuple[int, int, int, bytes]] = []
        fresh: dict[bytes, int] = {}
        results: list[list[Position | None]] = []
        now_ms = self._clock.now_ms()
        window = self._dedupe_window_ms
        keys = dedupe_keys((e.source_id, e.message_id) for p in group for e in p.events)
        seen = iter(
            self._dedupe.duplicates(keys, [e.received_at_ms for p in group for e in p.events])
        )
        at = iter(keys)
        nexts, partitions = self._next, self._partitions
        for pending in group:
            positions: list[Position | None] = []
            for event, payload in zip(pending.events, pending.payloads, strict=True):
                key = next(at)
                received = event.received_at_ms
                if next(seen) or (key in fresh and received - fresh[key] <= window):
                    positions.append(None)
                    continue
                fresh[key] = received
                partition = partition_for(event.identity_key, partitions)
                offset = nexts[partition]
                nexts[partition] = offset + 1
                records.append((partition, offset, now_ms, payload))
                positions.append((partition, offset))
            results.append(positions)
        con.executemany("INSERT INTO records VALUES(?,?,?,?)", records)
        self._dedupe.stage(list(fresh.items()))
        con.executemany(
            "UPDATE partitions SET next_offset=? WHERE partition=?",
            [(n, p) for p, n in enumerate(self._next)],
        )
        self._insert_dead_letters(group)
        if self._commits % 100 == 0:
            self._dedupe.prune()
        self._commits += 1
        con.execute("COMMIT")
        self._dedupe.applied()
        return results

    def _insert_dead_letters(self, group: list[PendingAppend]) -> None:
        rows = [
            (d.source_id, d.received_at_ms, d.message_id, d.field, d.reason, d.payload)
            for pending in group
            for d in pending.dead_letters
        ]
        if rows:
            self._write.executemany(
                "INSERT INTO dead_letters(source_id, received_at_ms, message_id, field, reason, payload)"
                " VALUES(?,?,?,?,?,?)",
                rows,
            )

    # -- dead letters ------------------------------------------------------------------------

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Durably record refused payloads (through the group commit)."""
        self.submit((), letters).result()

    def dead_letters(self, *, source_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        with self._read_lock:
            return read_dead_letters(self._read, source_id=source_id, limit=limit)

    # -- reading -----------------------------------------------------------------------------

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        """Records of ``partition`` with offset >= ``offset``, in offset order."""
        rows = self.read_encoded(partition, offset, max_records)
        return [Record(partition, off, decode_event(payload)) for off, payload in rows]

    def read_encoded(
        self, partition: int, offset: int, max_records: int = 1000
    ) -> list[tuple[int, bytes]]:
        """:meth:`read` undecoded: ``(offset, encoded event)`` pairs, for a reader that
        decodes only the fields it reads (the processor: :mod:`segflow.stream.decode`).

        >>> import os, tempfile
        >>> from segflow.spec import Event
        >>> log = SqliteEventLog(os.path.join(tempfile.mkdtemp(), "log.sqlite"), partitions=1)
        >>> e = Event(type="track", message_id="m1", source_id="s", timestamp_ms=1,
        ...           received_at_ms=1, user_id="u1", event="Signed Up")
        >>> _ = log.append([e]); [(o, decode_event(p) == e) for o, p in log.read_encoded(0, 0)]
        [(0, True)]
        >>> log.close()
        """
        with self._read_lock:
            rows: list[tuple[int, bytes]] = self._read.execute(
                "SELECT offset, payload FROM records WHERE partition=? AND offset>=? ORDER BY offset LIMIT ?",
                (partition, offset, max_records),
            ).fetchall()
        return rows

    def read_at(self, positions: Sequence[Position]) -> list[Record]:
        """The records at ``positions`` that exist (any order; one query per partition and
        500 offsets): a profile's timeline, read back for a backfill or a split."""
        found = self.read_payloads(positions)
        return [Record(p, o, decode_event(payload)) for (p, o), payload in found.items()]

    def read_payloads(self, positions: Sequence[Position]) -> dict[Position, bytes]:
        """The encoded events (:func:`~segflow.spec.events.encode_event`) at ``positions``
        that exist, by position, undecoded: a backfill decodes only what its rules read.

        >>> import os, tempfile
        >>> from segflow.spec import Event
        >>> log = SqliteEventLog(os.path.join(tempfile.mkdtemp(), "log.sqlite"), partitions=1)
        >>> e = Event(type="track", message_id="m1", source_id="s", timestamp_ms=1,
        ...           received_at_ms=1, user_id="u1", event="Signed Up")
        >>> _ = log.append([e]); list(log.read_payloads([(0, 0), (0, 7)]))
        [(0, 0)]
        >>> log.close()
        """
        by_partition: dict[int, list[int]] = {}
        for partition, offset in positions:
            by_partition.setdefault(partition, []).append(offset)
        out: dict[Position, bytes] = {}
        with self._read_lock:
            if self._mapped is None:
                # random reads across the whole file, through a memory map: no read() call and
                # no copy into SQLite's page cache per page (the pages stay the OS's; they
                # count in the process's RSS while mapped). Apart from ``_read`` so that the
                # processor's reads of the log's tail do not map the file.
                self._mapped = connect(self._path)
                self._mapped.execute(f"PRAGMA mmap_size={READ_MMAP_BYTES}")
            for partition, unsorted in sorted(by_partition.items()):
                offsets = sorted(set(unsorted))  # in key order: neighbouring B-tree pages
                for start in range(0, len(offsets), 500):
                    chunk = offsets[start : start + 500]
                    rows = self._mapped.execute(
                        "SELECT offset, payload FROM records WHERE partition=? AND offset IN "
                        f"({','.join('?' * len(chunk))})",
                        (partition, *chunk),
                    ).fetchall()
                    out.update(((partition, off), payload) for off, payload in rows)
        return out

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next appended record will get (committed state)."""
        with self._read_lock:
            rows = self._read.execute("SELECT partition, next_offset FROM partitions").fetchall()
        return {int(p): int(n) for p, n in rows}

    def committed(self, group: str) -> dict[int, int]:
        with self._read_lock:
            rows = dict(
                self._read.execute(
                    "SELECT partition, offset FROM consumer_offsets WHERE grp=?", (group,)
                ).fetchall()
            )
        return {p: int(rows.get(p, 0)) for p in range(self._partitions)}

    def consumer_groups(self) -> list[str]:
        with self._read_lock:
            return [
                r[0]
                for r in self._read.execute(
                    "SELECT DISTINCT grp FROM consumer_offsets ORDER BY grp"
                )
            ]

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        """Record that ``group`` consumed everything before ``offsets[p]`` (never moves back)."""
        rows = [(group, int(p), int(o)) for p, o in offsets.items()]
        self._locked_write(
            "INSERT INTO consumer_offsets VALUES(?,?,?) ON CONFLICT(grp, partition)"
            " DO UPDATE SET offset=max(offset, excluded.offset)",
            rows,
        )

    def apply_retention(
        self, *, older_than_ms: int = 0, required_groups: Sequence[str] = ()
    ) -> int:
        """Delete records every consumer group has passed (and appended before
        ``now - older_than_ms``). Returns how many were deleted; none while no group exists,
        nor while one of ``required_groups`` (the processor, the warehouse loader) has not
        committed yet: a consumer that has not started must not lose what it has not read."""
        groups = self.consumer_groups()
        if not groups or not set(required_groups) <= set(groups):
            return 0
        floor = {p: min(self.committed(g)[p] for g in groups) for p in range(self._partitions)}
        cutoff = self._clock.now_ms() - older_than_ms
        rows = [(p, o, cutoff) for p, o in floor.items()]
        return self._locked_write(
            "DELETE FROM records WHERE partition=? AND offset<? AND appended_at_ms<=?", rows
        )

    # -- erasure (segflow.privacy) -------------------------------------------------------

    def erase(self, positions: Iterable[Position], *, chunk: int = 20_000) -> int:
        """Delete the records at ``positions`` (a regulation); returns how many were deleted.

        Offsets are never reused (``partitions.next_offset`` does not move), so the offsets of
        every other record and every consumer's committed offset stay valid: readers skip the
        gap. Written in transactions of ``chunk`` records, so appends wait at most one chunk.
        """
        rows = sorted(set(positions))
        deleted = 0
        for start in range(0, len(rows), chunk):
            deleted += self._locked_write(
                "DELETE FROM records WHERE partition=? AND offset=?", rows[start : start + chunk]
            )
        return deleted

    def erase_dead_letters(self, matches: Callable[[bytes], bool], needles: Sequence[bytes]) -> int:
        """Delete the dead letters whose payload contains one of ``needles`` (a byte prefilter,
        case-insensitive) and that ``matches`` confirms; returns how many."""
        if not needles:
            return 0
        where = " OR ".join("instr(lower(CAST(payload AS TEXT)), ?) > 0" for _ in needles)
        args = [n.decode("utf-8", "replace").lower() for n in needles]
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT id, payload FROM dead_letters WHERE {where}", args
            ).fetchall()
        ids = [(row_id,) for row_id, payload in rows if matches(bytes(payload))]
        return self._locked_write("DELETE FROM dead_letters WHERE id=?", ids) if ids else 0

    def compact(self) -> None:
        """Rewrite the file without free pages (``VACUUM``) and empty the write-ahead file
        (``wal_checkpoint(TRUNCATE)``), so deleted records leave no bytes behind. Appends wait
        meanwhile (the write lock is held)."""
        with self._write_lock:
            vacuum(self._write)

    def _locked_write(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> int:
        with self._write_lock:
            try:
                self._write.execute("BEGIN IMMEDIATE")
                cur = self._write.executemany(sql, rows)
                self._write.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise LogWriteFailed(f"the log write failed: {exc}") from exc
        return int(cur.rowcount)

    def stats(self) -> dict[str, Any]:
        """Counts for health pages: records per partition, dead letters, pending appends, the
        dedupe index's ids in memory and sealed runs."""
        with self._read_lock:
            dead = self._read.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return {
            "end_offsets": self.end_offsets(),
            "dead_letters": int(dead),
            "pending_events": self._pending_events,
            "dedupe_memory_ids": len(index) if (index := self._index) is not None else 0,
            "dedupe_runs": index.runs if index is not None else 0,
        }

    def close(self) -> None:
        """Finish every queued append, then close the files."""
        if self._closed:
            return
        self._stop_writer()
        self._sealer.close()
        if self._index is not None:
            self._index.close()
        self._bell.close()
        self._write.close()
        self._read.close()
        if self._mapped is not None:
            self._mapped.close()


def read_dead_letters(
    con: sqlite3.Connection, *, source_id: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The most recent dead letters of a log file, newest first, through any connection to it
    (``segflow dead-letters list`` reads a running server's log read-only)."""
    sql = (
        "SELECT id, source_id, received_at_ms, message_id, field, reason, payload FROM dead_letters"
    )
    args: tuple[Any, ...] = ()
    if source_id is not None:
        sql += " WHERE source_id=?"
        args = (source_id,)
    rows = con.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    return [
        DeadLetter(
            id=r[0],
            source_id=r[1],
            received_at_ms=r[2],
            message_id=r[3],
            field=r[4],
            reason=r[5],
            payload=bytes(r[6]),
        )
        for r in rows
    ]


def open_log(data_dir: str | Path, **kwargs: Any) -> SqliteEventLog:
    """The log of a data directory (``DIR/log.sqlite``)."""
    return SqliteEventLog(Path(data_dir) / "log.sqlite", **kwargs)


__all__ = ["SqliteEventLog", "open_log", "read_dead_letters"]
