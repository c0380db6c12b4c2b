"""The warehouse loader: log + change feed -> DuckDB in micro-batches, exactly once.

Each micro-batch reads events from every log partition from the cursors stored *in DuckDB*,
reads the change feed after its stored sequence, and writes the events (one Arrow insert),
the changes and the new cursors in **one DuckDB transaction**. A crash before ``COMMIT``
loses the whole batch and the next run re-reads it; a crash after it re-reads nothing.
Events are also unique on ``(source_id, message_id)`` (``INSERT OR IGNORE``), so a record
appended twice to the log is loaded once. The log's own consumer-group offset (group
``warehouse``) is committed after the DuckDB commit, for lag monitoring only.

Between batches the file is let go for other processes (``warehouse.release_between_batches``).
A loader running as a service (:meth:`WarehouseLoader.start`) holds it between busy batches and
releases it after a batch when another process asked for it (segflow's
:func:`~segflow.warehouse.connection.connect` touches the release marker while it waits; a
watcher thread looks every :data:`RELEASE_POLL_S`), when it finds nothing new (idle), or when
it has held it ``warehouse.hold_file_max_ms`` (10 s; a tool that opens the file without asking
still gets in, as before). Reopening and closing the file every batch cost more than the rest
of the batch: the close checkpoints, and every checkpoint recompresses the table's last,
growing row group (docs/warehouse.md, "What a batch costs"). A held file is checkpointed when
its write-ahead file passes :data:`HELD_CHECKPOINT_THRESHOLD`, or when it is released.

The loader shares its process with the processor, so it holds the interpreter as little as it
can: it reads the log's encoded events (``read_encoded``), never decoded records, and lets
DuckDB parse the scalar columns (:func:`segflow.warehouse.batches.encoded_table`).

>>> import tempfile, os
>>> from segflow.clock import ManualClock
>>> from segflow.log.memory import MemoryEventLog
>>> from segflow.spec import Event
>>> log = MemoryEventLog(partitions=2)
>>> _ = log.append([Event(type="track", message_id="m1", source_id="web", timestamp_ms=1,
...                       received_at_ms=1, user_id="u1", event="Signed Up")])
>>> loader = WarehouseLoader(log, None, os.path.join(tempfile.mkdtemp(), "w.duckdb"), ManualClock(5))
>>> loader.run_once().events_loaded
1
>>> loader.run_once().events_loaded
0
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sized
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from segflow.background import BackgroundLoop
from segflow.clock import Clock
from segflow.config import WarehouseSettings
from segflow.log.base import EventLog
from segflow.spec.changes import AnyChange, ChangeFeed
from segflow.spec.events import Event, encode_event
from segflow.telemetry.metrics import JOB_DURATION, LOADER_EVENTS
from segflow.warehouse.batches import INSERT_ENCODED_SQL, LogBatch, encoded_table
from segflow.warehouse.changes import apply_changes
from segflow.warehouse.connection import connect, release_asked
from segflow.warehouse.schema import CHANGES_CURSOR, log_cursor_name

CONSUMER_GROUP = "warehouse"
RELEASE_POLL_S = 0.05
"""How often a loader holding the file looks for another process asking for it."""
RELEASE_ASKED_S = 2.0
"""After a request, the loader releases the file after every batch for this long (the
asking process retries every 50 ms; once it holds the file it stops asking)."""
HELD_CHECKPOINT_THRESHOLD = "256MB"
"""DuckDB's ``checkpoint_threshold`` while the loader holds the file (DuckDB's default, 16 MB,
is one batch of ~35,000 events: a checkpoint a batch, the cost this avoids)."""
logger = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class LoadInfo:
    """What one micro-batch did."""

    events_read: int = 0
    events_loaded: int = 0
    duplicates: int = 0
    changes_applied: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    change_seq: int = 0
    duration_ms: float = 0.0

    @property
    def empty(self) -> bool:
        return self.events_read == 0 and self.changes_applied == 0


class WarehouseLoader(BackgroundLoop):
    """Consumes ``log`` (and ``change_feed`` when given) into the DuckDB file at ``path``.

    Use :meth:`run_once` (one micro-batch), :meth:`run_until_idle`, or :meth:`start` /
    :meth:`stop` for a background thread that flushes at least every ``flush_interval_ms``.
    """

    name = "warehouse-loader"  # a ``segflow.server.services.Service``
    join_s = 10.0
    releases_file = True  # DuckDB: let other processes open the file between batches

    def __init__(
        self,
        log: EventLog,
        change_feed: ChangeFeed | None,
        path: str | Path,
        clock: Clock,
        settings: WarehouseSettings | None = None,
    ) -> None:
        self.log = log
        self.change_feed = change_feed
        self.path = Path(path)
        self.clock = clock
        self.settings = settings or WarehouseSettings()
        super().__init__()
        self.interval_s = self.settings.flush_interval_ms / 1000  # flushed at least this often
        self._con: Any = None
        self._file_lock = threading.RLock()  # held while the loader uses the file
        self._commands_lock = threading.Lock()  # the queue only: submitting never waits
        self._commands: list[_Command[Any]] = []
        self._retained_ms = 0
        self._last: LoadInfo | None = None  # where the previous micro-batch left the cursors
        self.last_error: BaseException | None = None
        self.change_seq: int | None = None  # the last change loaded (None: no batch ran yet)
        # events for which this is true are not loaded (segflow.privacy suppressions)
        self.skip: Callable[[Event], bool] | None = None
        # the list behind ``skip``: while it is empty nothing is asked, and the events are not
        # decoded whole to ask it (~0.5 µs an event)
        self.suppressions: Sized | None = None
        self.lock = self._file_lock  # a backup holds it to keep the file still (segflow.backup)
        self._watch: _ReleaseWatch | None = None  # running: the file is held between batches
        self._opened_ms = 0  # when the file was last opened (clock time)

    # -- one micro-batch -------------------------------------------------------------------
    def run_once(self) -> LoadInfo:
        """Load one micro-batch (up to ``batch_max_events`` events and their changes)."""
        t0 = time.perf_counter()
        reopens = self.settings.release_between_batches and self.releases_file
        if reopens and self._last is not None and self._nothing_new(self._last):
            if self._con is not None:  # idle: a held file is let go
                with self._file_lock:
                    self._release()
            return LoadInfo(offsets=self._last.offsets, change_seq=self._last.change_seq)
        with self._file_lock:
            try:
                con = self._connection()
                try:
                    info = self._load(con, t0)
                    self._run_commands(con)
                    self._apply_retention(con)
                finally:
                    if reopens and not self._holds_file():
                        self._release()
                self._run_file_commands()
            except Exception:
                JOB_DURATION.labels(job="warehouse_load", status="failed").observe(
                    time.perf_counter() - t0
                )
                raise
        if not info.empty:
            JOB_DURATION.labels(job="warehouse_load", status="succeeded").observe(
                info.duration_ms / 1000
            )
            LOADER_EVENTS.inc(info.events_loaded)
        if info.events_read:
            self.log.commit(CONSUMER_GROUP, info.offsets)
        self.change_seq = info.change_seq
        self._last = info
        return info

    def _holds_file(self) -> bool:
        """Whether the file stays open after this batch: the release watcher runs, no other
        process asked for the file lately, and it was opened less than
        ``warehouse.hold_file_max_ms`` ago."""
        if self._watch is None:
            return False
        if self.clock.now_ms() - self._opened_ms >= self.settings.hold_file_max_ms:
            return False
        return not release_asked(self.path, within_s=RELEASE_ASKED_S)

    def release_if_asked(self) -> bool:
        """Release the file when another process asked for it (the watcher's tick); returns
        whether it did."""
        if self._con is None or not release_asked(self.path, within_s=RELEASE_ASKED_S):
            return False
        with self._file_lock:
            self._release()
        return True

    def _nothing_new(self, last: LoadInfo) -> bool:
        """No record or change after ``last``'s cursors, no queued command, no retention due:
        the micro-batch would find nothing, so the file is not opened. (Opening and closing a
        DuckDB file costs tens of milliseconds, mostly holding the interpreter: every flush
        interval it stalled the API and the processor of an idle server.) Only when the file
        is released between batches (a kept connection costs nothing to reuse), and the loader
        is the only writer of its cursors, so ``last`` is what the file says."""
        with self._commands_lock:
            if self._commands:
                return False
        retention = self.settings.retention_ms
        interval_ms = int(self.settings.retention_interval_s * 1000)
        if retention is not None and self.clock.now_ms() - self._retained_ms >= interval_ms:
            return False
        end_offsets = getattr(self.log, "end_offsets", None)
        if end_offsets is None:
            return False
        if any(end > last.offsets.get(p, 0) for p, end in end_offsets().items()):
            return False
        return not (self.change_feed and self.change_feed.read(last.change_seq, 1))

    def changes_lag(self) -> int | None:
        """Changes the processor committed that are not loaded yet (None: unknown)."""
        last_seq = getattr(self.change_feed, "last_seq", None)
        if last_seq is None or self.change_seq is None:
            return None
        return max(0, int(last_seq()) - self.change_seq)

    # -- commands (segflow.privacy) ---------------------------------------------------------
    def submit(
        self,
        command: Callable[[Any], _T],
        *,
        after: Mapping[int, int] | None = None,
        after_change: int = 0,
    ) -> Future[_T]:
        """Queue ``command(con)`` to run in the loader's thread, in one DuckDB transaction,
        once the loader has loaded every partition up to ``after`` and the change feed up to
        ``after_change`` (a barrier). The loader is the file's only writer, so the command
        never races a micro-batch."""
        pending: _Command[_T] = _Command(command, dict(after or {}), after_change, False)
        return self._queue(pending)

    def submit_file(self, command: Callable[[Path], _T]) -> Future[_T]:
        """Queue ``command(path)`` to run in the loader's thread with the file closed by the
        loader (e.g. rewriting it: :func:`segflow.warehouse.erase.rewrite`)."""
        pending: _Command[_T] = _Command(command, {}, 0, True)
        return self._queue(pending)

    def _queue(self, pending: _Command[_T]) -> Future[_T]:
        with self._commands_lock:
            self._commands.append(pending)
        self._wake.set()
        return pending.future

    def _take(self, needs_file: bool, cursors: Mapping[str, int] | None) -> list[_Command[Any]]:
        """Remove and return the queued commands of one kind whose barrier is passed."""
        with self._commands_lock:
            ready = [
                c
                for c in self._commands
                if c.needs_file == needs_file and (cursors is None or _passed(cursors, c))
            ]
            for cmd in ready:
                self._commands.remove(cmd)
        return ready

    def _run_commands(self, con: Any) -> None:
        with self._commands_lock:
            if not any(not c.needs_file for c in self._commands):
                return
        with self._file_lock:
            for cmd in self._take(False, read_cursors(con)):
                con.execute("BEGIN")
                try:
                    result = cmd.command(con)
                    con.execute("COMMIT")
                except Exception as exc:  # the command's failure is its caller's to handle
                    con.execute("ROLLBACK")
                    cmd.future.set_exception(exc)
                    continue
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                cmd.future.set_result(result)

    def _run_file_commands(self) -> None:
        with self._file_lock:
            queued = self._take(True, None)
            if not queued:
                return
            self._release()
            for cmd in queued:
                try:
                    cmd.future.set_result(cmd.command(self.path))
                except Exception as exc:
                    cmd.future.set_exception(exc)

    def _apply_retention(self, con: Any) -> int:
        """Delete warehouse events older than ``warehouse.retention_ms`` (event time), at
        most every ``retention_interval_s``; returns how many were deleted."""
        retention = self.settings.retention_ms
        now_ms = self.clock.now_ms()
        interval_ms = int(self.settings.retention_interval_s * 1000)
        if retention is None or now_ms - self._retained_ms < interval_ms:
            return 0
        self._retained_ms = now_ms
        row = con.execute(
            "DELETE FROM events WHERE timestamp_ms < ?", [now_ms - retention]
        ).fetchone()
        return int(row[0]) if row else 0

    def run_until_idle(self, max_batches: int = 1_000_000) -> list[LoadInfo]:
        """Run micro-batches until one finds nothing new."""
        out: list[LoadInfo] = []
        for _ in range(max_batches):
            info = self.run_once()
            if info.empty:
                break
            out.append(info)
        return out

    def _load(self, con: Any, t0: float) -> LoadInfo:
        cursors = read_cursors(con)
        offsets = {p: cursors.get(log_cursor_name(p), 0) for p in range(self.log.partitions)}
        batch, new_offsets = self._read_log(offsets)
        change_seq = cursors.get(CHANGES_CURSOR, 0)
        changes = (
            self.change_feed.read(change_seq, self.settings.batch_max_events)
            if self.change_feed
            else []
        )
        if not batch.parts and not changes:
            return LoadInfo(offsets=offsets, change_seq=change_seq)
        con.execute("BEGIN")
        try:
            # INSERT OR IGNORE also drops repeats inside the batch itself.
            loaded = self._insert_batch(con, batch)
            applied = self._apply_changes(con, changes)
            new_seq = changes[-1][0] if changes else change_seq
            _write_cursors(con, new_offsets, new_seq)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        read = len(batch)
        return LoadInfo(
            events_read=read,
            events_loaded=loaded,
            duplicates=read - loaded,
            changes_applied=applied,
            offsets=new_offsets,
            change_seq=new_seq,
            duration_ms=(time.perf_counter() - t0) * 1000,
        )

    def _apply_changes(self, con: Any, changes: list[tuple[int, AnyChange]]) -> int:
        return apply_changes(con, changes)

    def _read_log(self, offsets: dict[int, int]) -> tuple[LogBatch, dict[int, int]]:
        budget = self.settings.batch_max_events
        per_partition = max(1, budget // max(1, self.log.partitions))
        parts: list[tuple[int, list[tuple[int, bytes]]]] = []
        new_offsets = dict(offsets)
        for p, start in offsets.items():
            got = self._read_encoded(p, start, per_partition)
            if got:
                parts.append((p, got))
                new_offsets[p] = got[-1][0] + 1
        return LogBatch(parts), new_offsets

    def _read_encoded(self, partition: int, offset: int, n: int) -> list[tuple[int, bytes]]:
        """``(offset, encoded event)`` pairs: the log's own bytes where it hands them out
        (SQLite, Kafka), else its records encoded (an in-memory log)."""
        read_encoded = getattr(self.log, "read_encoded", None)
        if read_encoded is not None:
            return read_encoded(partition, offset, n)  # type: ignore[no-any-return]
        return [(r.offset, encode_event(r.event)) for r in self.log.read(partition, offset, n)]

    def _skip(self) -> Callable[[Event], bool] | None:
        """``skip``, unless the suppressions behind it are empty now."""
        listed = self.suppressions
        return None if listed is not None and not len(listed) else self.skip

    def _insert_batch(self, con: Any, batch: LogBatch) -> int:
        """Insert the events of ``batch`` but the suppressed ones (``skip``); returns how
        many were new (``INSERT OR IGNORE`` also drops repeats inside the batch itself)."""
        if not batch.parts:
            return 0
        table = encoded_table(batch, self._skip())
        if not table.num_rows:
            return 0
        con.register("_wh_batch", table)
        try:
            row = con.execute(INSERT_ENCODED_SQL, {"loaded_at_ms": self.clock.now_ms()}).fetchone()
        finally:
            con.unregister("_wh_batch")
        return int(row[0]) if row else 0

    # -- the file --------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._con is None:
            con = connect(self.path, timeout_s=self.settings.lock_timeout_s, ask=False)
            if self._watch is not None:
                con.execute(f"SET checkpoint_threshold = '{HELD_CHECKPOINT_THRESHOLD}'")
            self._con, self._opened_ms = con, self.clock.now_ms()
        return self._con

    def _release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- background service (a BackgroundLoop: start() / stop()) ----------------------------
    def start(self) -> None:
        """Start the loader's thread (and, when it may hold the file between batches, the
        watcher that releases it for another process)."""
        self.watch_release_requests()
        super().start()

    def watch_release_requests(self) -> None:
        """Hold the file between busy batches from now on (see the module docstring;
        :meth:`stop` ends it). :meth:`start` calls it."""
        s = self.settings
        if not (s.release_between_batches and s.hold_file_max_ms > 0 and self.releases_file):
            return
        if self._watch is None:
            self._watch = _ReleaseWatch(self)
            self._watch.start()

    def tick(self) -> bool:
        """One micro-batch; ``True`` when it was full (the next one follows at once). A failed
        batch is kept as :attr:`last_error` (shown by ``/api/v1/status``) and retried after
        the interval."""
        try:
            info = self.run_once()
        except Exception as exc:
            self.last_error = exc
            raise
        self.last_error = None
        return info.events_read >= self.settings.batch_max_events

    def stop(self) -> None:
        """Stop the thread after its current batch and release the file."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        super().stop()
        with self._file_lock:
            self._release()


class _ReleaseWatch(BackgroundLoop):
    """Looks every :data:`RELEASE_POLL_S` for another process asking for the loader's file."""

    name = "warehouse-release"
    join_s = 30.0

    def __init__(self, loader: WarehouseLoader) -> None:
        super().__init__()
        self.loader = loader
        self.interval_s = RELEASE_POLL_S

    def tick(self) -> None:
        self.loader.release_if_asked()


class _Command(Generic[_T]):
    """A queued loader command, its barrier and its future."""

    def __init__(
        self, command: Callable[..., _T], after: dict[int, int], after_change: int, needs_file: bool
    ) -> None:
        self.command = command
        self.after = after
        self.after_change = after_change
        self.needs_file = needs_file
        self.future: Future[_T] = Future()


def _passed(cursors: Mapping[str, int], cmd: _Command[Any]) -> bool:
    if cursors.get(CHANGES_CURSOR, 0) < cmd.after_change:
        return False
    return all(cursors.get(log_cursor_name(p), 0) >= o for p, o in cmd.after.items())


def read_cursors(con: Any) -> dict[str, int]:
    """The loader's cursors: ``log:<partition>`` -> next offset, ``changes`` -> last seq."""
    return {
        name: int(pos)
        for name, pos in con.execute("SELECT name, position FROM warehouse_cursors").fetchall()
    }


def _write_cursors(con: Any, offsets: dict[int, int], change_seq: int) -> None:
    rows = [(log_cursor_name(p), o) for p, o in offsets.items()] + [(CHANGES_CURSOR, change_seq)]
    con.executemany(
        "INSERT INTO warehouse_cursors VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        rows,
    )
