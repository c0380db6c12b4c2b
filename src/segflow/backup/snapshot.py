"""One consistent point across the data directory's SQLite files, while segflow runs.

:func:`pinned` takes every file's write lock (``BEGIN IMMEDIATE`` on its own connection, in
a fixed order; each segflow writer holds one file's lock at a time, so this cannot deadlock),
opens a read transaction on each file while all the locks are held, and releases the write
locks at once. The read transactions now see all the files *as of the same instant*, and
keep seeing it (WAL snapshot isolation) while writers go on; SQLite's online backup API run
from those connections copies exactly that instant. Writers wait only for the pinning
itself (milliseconds), not for the copy.

>>> import os, sqlite3, tempfile
>>> d = tempfile.mkdtemp(); path = os.path.join(d, "a.sqlite")
>>> con = sqlite3.connect(path, isolation_level=None); _ = con.execute("PRAGMA journal_mode=WAL")
>>> _ = con.execute("CREATE TABLE t(x)"); _ = con.execute("INSERT INTO t VALUES (1)")
>>> with pinned([path]) as readers:
...     _ = con.execute("INSERT INTO t VALUES (2)")  # a writer goes on
...     readers[path].execute("SELECT count(*) FROM t").fetchone()
(1,)
>>> con.close()
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from segflow.db.files import fsync_path
from segflow.errors import TransientError


class BackupBusy(TransientError):
    """A store's write lock could not be taken in time (a long write transaction)."""

    code = "backup_busy"


def _open(path: str | Path, timeout_s: float) -> sqlite3.Connection:
    return sqlite3.connect(
        str(path), isolation_level=None, timeout=timeout_s, check_same_thread=False
    )


@contextlib.contextmanager
def pinned(
    paths: Sequence[str | Path],
    *,
    timeout_s: float = 30.0,
    while_locked: Callable[[dict[str, sqlite3.Connection]], None] | None = None,
) -> Iterator[dict[str, sqlite3.Connection]]:
    """Read connections on ``paths`` pinned at one instant (see the module docstring).

    ``while_locked`` runs while every write lock is still held (tests read a reference copy
    there).
    """
    writers: list[sqlite3.Connection] = []
    readers: dict[str, sqlite3.Connection] = {}
    try:
        for path in paths:
            writer = _open(path, timeout_s)
            writers.append(writer)
            try:
                writer.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise BackupBusy(f"cannot lock {os.fspath(path)}: {exc}") from exc
        for path in paths:
            reader = _open(path, timeout_s)
            readers[os.fspath(path)] = reader
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # pins the snapshot
        if while_locked is not None:
            while_locked(readers)
    except BaseException:
        _close_all(readers.values(), writers)
        raise
    for writer in writers:
        writer.execute("ROLLBACK")
        writer.close()
    try:
        yield readers
    finally:
        _close_all(readers.values(), [])


def _close_all(
    readers: Iterable[sqlite3.Connection], writers: Iterable[sqlite3.Connection]
) -> None:
    for con in [*writers, *readers]:
        with contextlib.suppress(sqlite3.Error):
            if con.in_transaction:
                con.execute("ROLLBACK")
        con.close()


def copy_pinned(reader: sqlite3.Connection, target: Path) -> None:
    """Copy a pinned connection's snapshot to ``target`` (SQLite's online backup API)."""
    dest = sqlite3.connect(str(target))
    try:
        reader.backup(dest)
    finally:
        dest.close()
    fsync_path(target)
