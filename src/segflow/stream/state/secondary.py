"""One RocksDB *secondary* instance of a state directory per process, shared by its readers.

A secondary (:class:`segflow.stream.state.rocksdb.RocksReader`) replays the primary's
write-ahead log into memtables of its own, which only the primary's flushes empty (the
secondary drops them at the first catch-up after the flush shows in the MANIFEST), and keeps
its own block cache and the index and filter blocks of every table file it opened. All of it
is per instance: a ``serve`` process that opened one secondary for the API, one per change
feed and one for delivery held three to four copies of the same unflushed writes
(BENCHMARKS.md, "Reader memory"). Here the readers of one directory in one process share one
instance (reference-counted, closed with its last reader; a forked child opens its own), so
they also share its catch-ups: one ``try_catch_up_with_primary`` serves every reader whose
``refresh_ms`` it satisfies.

**The bound.** A secondary's memtables hold what the primary has not flushed yet: at most
the primary's write buffer (``stream.rocksdb_write_buffer_mb``, 64 MB), released at the first
catch-up after the primary's flush (measured: RocksDB's ``RemoveOldMemTables`` does drop them).
What a reader process holds for the state is then about that write buffer, once, + the
readers' block cache (``READER_CACHE_MB``, shared by the process's secondaries) + the table
files' index and filter blocks (~1.5% of the state's bytes), instead of all of it once per
reader.

>>> def opener(info_dir): return None  # no store yet: reads as empty
>>> a, b = shared("/no/such/state", opener), shared("/no/such/state", opener)
>>> a is b, a.users, a.ready(0.005)
(True, 2, False)
>>> release(a); release(b); a.users, a.info_dir
(0, None)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

READER_CACHE_MB = 16
MEMTABLES = "rocksdb.size-all-mem-tables"

_registry: dict[tuple[int, str], Secondary] = {}
_registry_lock = threading.Lock()


class Secondary:
    """A secondary instance that ``opener(info_dir)`` opens (``None`` while there is no store;
    ``info_dir``: a temporary directory for its info log, removed at :meth:`close`), caught up
    at most as often as its readers ask.
    Callers hold :attr:`lock` around :meth:`ready` and the read that follows it."""

    def __init__(
        self,
        key: str,
        opener: Callable[[str], Any],
    ) -> None:
        self.key = key
        self.opener = opener
        self.lock = threading.Lock()
        self.db: Any = None
        self.users = 0
        self.caught_up = float("-inf")  # time.monotonic() of the last catch-up
        self.info_dir: str | None = None

    def ready(self, refresh_s: float) -> bool:
        """Catch up when the last catch-up is older than ``refresh_s``; False while there is
        no store to read."""
        if self.db is None:
            self._open()
            return self.db is not None
        now = time.monotonic()
        if now - self.caught_up < refresh_s:
            return True
        try:
            self.db.try_catch_up_with_primary()
        except Exception:  # the primary deleted files we needed: start afresh
            self._reopen()
            return self.db is not None
        self.caught_up = now
        return True

    def memtable_bytes(self) -> int:
        """The bytes of the instance's memtables (active and immutable): the WAL it replayed."""
        if self.db is None:
            return 0
        return int(self.db.property_int_value(MEMTABLES) or 0)

    def _open(self) -> None:
        if self.info_dir is None:
            self.info_dir = tempfile.mkdtemp(prefix="segflow-state-reader-")
        self.db = self.opener(self.info_dir)
        if self.db is not None:
            self.caught_up = time.monotonic()

    def _reopen(self) -> None:
        self._close_db()
        self._open()

    def _close_db(self) -> None:
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.close()
            self.db = None

    def close(self) -> None:
        """Close the instance and remove its info log directory."""
        self._close_db()
        if self.info_dir is not None:
            shutil.rmtree(self.info_dir, ignore_errors=True)
            self.info_dir = None


def shared(path: str | Path, opener: Callable[[str], Any]) -> Secondary:
    """This process's secondary of ``path`` (opened by ``opener`` when it is the first
    reader), with one more user: give it back with :func:`release`."""
    key = (os.getpid(), os.path.realpath(path))
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = _registry[key] = Secondary(key[1], opener)
        found.users += 1
    return found


def release(secondary: Secondary) -> None:
    """One user fewer; the last one closes the instance."""
    with _registry_lock:
        secondary.users -= 1
        if secondary.users > 0:
            return
        key = (os.getpid(), secondary.key)
        if _registry.get(key) is secondary:
            del _registry[key]
    with secondary.lock:
        secondary.close()
