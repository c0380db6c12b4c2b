"""Compaction: rewrite every store of the data directory so erased rows leave no bytes.

Deleting a row frees its space but does not overwrite it: SQLite keeps it in free pages, in
the unused part of pages and in old page versions in the write-ahead file; DuckDB keeps freed
blocks as they were. So after a regulation erases a person:

- each SQLite file (``log.sqlite``, ``state.sqlite``, ``delivery.sqlite``, ``catalog.sqlite``;
  with the Kafka driver ``keys.sqlite``, the crypto-shredding keys, instead of the log) is
  ``VACUUM``-ed by the connection that owns its writes, under that owner's lock, and its
  write-ahead file is checkpointed and truncated to zero bytes (:func:`segflow.db.sqlite.vacuum`);
- the RocksDB state (``state/``) is flushed, fully compacted into its bottommost level with
  the tombstones dropped, and its MANIFEST started afresh, while the processor goes on; the
  old WAL, SST and MANIFEST files are deleted before it returns
  (:meth:`segflow.stream.state.rocksdb.RocksStateStore.compact`);
- ``warehouse.duckdb`` is copied into a fresh file (``COPY FROM DATABASE``) and swapped in by
  the warehouse loader, its only writer, with no other connection open
  (:func:`segflow.warehouse.erase.rewrite`). A ``CHECKPOINT`` alone is not enough: freed
  blocks keep their old bytes (measured; docs/privacy.md, "Compaction").

Cost: proportional to the size of the stores, not of the person (BENCHMARKS.md, "Privacy"),
which is why the runner compacts once for every regulation that finished erasing, not per
regulation.
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from segflow.db.sqlite import connect, vacuum
from segflow.privacy.exceptions import StepTimeout
from segflow.privacy.job import Owners
from segflow.privacy.store import PrivacyStore
from segflow.warehouse.connection import warehouse_path
from segflow.warehouse.erase import rewrite


def compact(owners: Owners, catalog: PrivacyStore, *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Compact every store; returns seconds spent per store and the warehouse's new size."""
    spent: dict[str, Any] = {}

    def timed(name: str, action: Any) -> Any:
        t0 = time.perf_counter()
        out = action()
        spent[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        return out

    timed("log", owners.log.compact)
    state_compact = getattr(owners.processor.store, "compact", None)
    if callable(state_compact):
        timed("state", state_compact)
    timed("delivery", owners.delivery.compact)
    timed("catalog", catalog.compact)
    if not owners.loader.releases_file:  # PostgreSQL: the server's storage, not a file of ours
        spent["warehouse"] = "not rewritten: a PostgreSQL server reclaims space by VACUUM"
        return spent
    future = owners.loader.submit_file(rewrite)
    try:
        spent["warehouse_bytes"] = timed("warehouse", lambda: future.result(timeout=timeout_s))
    except FutureTimeout as exc:
        raise StepTimeout(
            f"the warehouse loader did not rewrite the file within {timeout_s:g} s"
        ) from exc
    return spent


SQLITE_FILES = ("log.sqlite", "state.sqlite", "delivery.sqlite", "catalog.sqlite", "keys.sqlite")


def compact_data_dir(data_dir: str | Path, *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Compact every store of a data directory from this process (``segflow privacy
    compact``): meant for when ``segflow serve`` is stopped (the serve process compacts by
    itself after regulations; a long ``VACUUM`` from outside makes its writers wait)."""
    root = Path(data_dir)
    spent: dict[str, Any] = {}
    for name in SQLITE_FILES:
        path = root / name
        if not path.exists():
            continue
        t0 = time.perf_counter()
        con = connect(path)
        try:
            vacuum(con)
        finally:
            con.close()
        spent[f"{path.stem}_s"] = round(time.perf_counter() - t0, 3)
    if (root / "state" / "CURRENT").exists():
        from segflow.stream.state.rocksdb import RocksStateStore

        t0 = time.perf_counter()
        store = RocksStateStore(root / "state")  # StateStoreBusy while a processor runs
        try:
            store.compact()
        finally:
            store.close()
        spent["state_s"] = round(time.perf_counter() - t0, 3)
    wh = warehouse_path(root)
    if wh.exists():
        t0 = time.perf_counter()
        spent["warehouse_bytes"] = rewrite(wh, timeout_s=timeout_s)
        spent["warehouse_s"] = round(time.perf_counter() - t0, 3)
    return spent
