"""Opening ``warehouse.duckdb``: one writing process per file, readers wait for the lock.

DuckDB lets one process open a database file for writing, and no other process may open it
(not even read-only) while it does. segflow's loader therefore lets it go between micro-batches
(``warehouse.release_between_batches``, the default): after every batch, or, while batches
keep coming, when another process asks for it, when idle, and at least every
``warehouse.hold_file_max_ms`` (:mod:`segflow.warehouse.loader`). Every other opener
(``segflow sql``, ``segflow export``, the API process's previews, ML jobs) retries on the lock
for up to ``lock_timeout_s`` and, while it waits, asks the holder to let go by touching the
file's *release marker* (:func:`ask_release`; docs/warehouse.md, "Who owns the file"). Inside
one process DuckDB shares one database instance per file between connections, so in-process
readers open it read-write (the default) and never wait.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "warehouse.duckdb")
>>> with open_warehouse(path) as con:
...     con.execute("SELECT count(*) FROM events").fetchone()
(0,)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from segflow.warehouse.exceptions import WarehouseBusy
from segflow.warehouse.schema import ensure_schema

WAREHOUSE_FILE = "warehouse.duckdb"
_RETRY_S = 0.05
_SCHEMA_LOCK = threading.Lock()
RELEASE_MARKER_SUFFIX = ".release"


def warehouse_path(data_dir: str | Path) -> Path:
    """The warehouse file of a data directory.

    >>> warehouse_path("/data").name
    'warehouse.duckdb'
    """
    return Path(data_dir) / WAREHOUSE_FILE


def release_marker(path: str | Path) -> Path:
    """The file whose modification time asks the process holding ``path`` to release it.

    >>> release_marker("/data/warehouse.duckdb").name
    'warehouse.duckdb.release'
    """
    path = Path(path)
    return path.with_name(path.name + RELEASE_MARKER_SUFFIX)


def ask_release(path: str | Path) -> None:
    """Ask the process holding ``path`` (``segflow serve``'s loader) to release it: touch its
    :func:`release_marker`. :func:`connect` does it while it waits for the lock; a tool that
    opens the file another way can do the same (``touch warehouse.duckdb.release``).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "warehouse.duckdb")
    >>> ask_release(path); release_asked(path, within_s=60)
    True
    """
    with contextlib.suppress(OSError):  # a read-only data directory: nobody can be asked
        release_marker(path).touch()


def release_asked(path: str | Path, *, within_s: float) -> bool:
    """Whether another process asked for ``path`` in the last ``within_s`` seconds.

    >>> import tempfile, os
    >>> release_asked(os.path.join(tempfile.mkdtemp(), "warehouse.duckdb"), within_s=60)
    False
    """
    try:
        asked = os.stat(release_marker(path)).st_mtime
    except OSError:
        return False
    return time.time() - asked < within_s


def connect(
    path: str | Path, *, read_only: bool = False, timeout_s: float = 30.0, ask: bool = True
) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying while another process holds its lock; writers get the schema.
    While it waits it asks the holder to release the file (:func:`ask_release`; ``ask=False``:
    the loader itself, which only waits).

    Raises :class:`WarehouseBusy` when the lock is still held after ``timeout_s``.
    """
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_conflict(exc) or time.monotonic() >= deadline:
                if _is_lock_conflict(exc):
                    raise WarehouseBusy(str(path)) from exc
                raise
            if ask:
                ask_release(path)
            time.sleep(_RETRY_S)
    if not read_only:
        _ensure_schema_once(con)
    return con


def _ensure_schema_once(con: duckdb.DuckDBPyConnection) -> None:
    # Connections of one process share one database instance and could race to create the
    # schema (a write-write conflict); other processes cannot open the file meanwhile.
    with _SCHEMA_LOCK:
        ensure_schema(con)


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    # DuckDB has no dedicated lock-conflict type: an IOException naming the lock is the marker.
    # In this process, the file held by ``segflow.warehouse.erase.exclusive`` (a rewrite)
    # shows as a configuration mismatch: wait for it the same way.
    text = str(exc).lower()
    return "lock" in text or "different configuration" in text


@contextmanager
def open_warehouse(
    path: str | Path, *, read_only: bool = False, timeout_s: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Context-managed :func:`connect` that closes (and so releases the file) on exit."""
    if read_only and not Path(path).exists():
        with open_warehouse(path, timeout_s=timeout_s):
            pass
    con = connect(path, read_only=read_only, timeout_s=timeout_s)
    try:
        yield con
    finally:
        con.close()
