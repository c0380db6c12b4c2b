"""Holding ``warehouse.duckdb`` still while it is copied.

DuckDB lets one process write a file; segflow's loader (in ``segflow serve``) holds it only
during a micro-batch. A backup holds it still, ``CHECKPOINT``s it (everything in the main
file, nothing in ``.wal``) and copies the file's bytes — measured 20-30x faster than
``COPY FROM DATABASE`` or ``EXPORT DATABASE`` (docs/operations.md, "Backup and restore"):

- :func:`hold_exclusively` (``segflow backup`` in its own process): opens the file, waiting
  for the serve process to release it between micro-batches; while the backup holds it, the
  loader waits (up to ``warehouse.lock_timeout_s``, then retries its batch later).
- :func:`hold_in_process` (``POST /api/v1/backups`` inside serve): takes the loader's lock
  (the loader pauses between batches) and raises DuckDB's checkpoint threshold until the
  copy is done, so nothing rewrites the main file while it is read; other in-process writers
  (ML jobs) go on into the write-ahead file and are not part of the backup.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "warehouse.duckdb")
>>> with hold_exclusively(path, timeout_s=1) as con:
...     con is None
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import duckdb

from segflow.warehouse.connection import connect

_NO_CHECKPOINTS = "1000 GB"


@contextlib.contextmanager
def hold_exclusively(
    path: str | Path, *, timeout_s: float
) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """The warehouse opened by this process (None when the file does not exist)."""
    if not Path(path).exists():
        yield None
        return
    con = connect(path, timeout_s=timeout_s)
    try:
        con.execute("CHECKPOINT")
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def hold_in_process(
    path: str | Path, loader_lock: AbstractContextManager[Any], *, timeout_s: float
) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """The warehouse of this (serve) process, the loader paused (see the module docstring)."""
    if not Path(path).exists():
        yield None
        return
    with loader_lock:
        con = connect(path, timeout_s=timeout_s)
        try:
            old = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
            con.execute("CHECKPOINT")
            con.execute(f"SET checkpoint_threshold = '{_NO_CHECKPOINTS}'")
            try:
                yield con
            finally:
                if old is not None:
                    con.execute("SET checkpoint_threshold = ?", [str(old[0])])
        finally:
            con.close()
