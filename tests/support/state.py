"""Reading a state store's committed values in tests and benchmarks, closing the reader each
time (a PostgreSQL reader holds a connection), how many records processors consumed, and
every pair of a store (``state.sqlite`` or the RocksDB directory ``state/``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def committed_get(store: Any, ns: str, key: str) -> bytes | None:
    reader = store.reader()
    try:
        return reader.get(ns, key)  # type: ignore[no-any-return]
    finally:
        reader.close()


def committed_scan(store: Any, ns: str, start: str, end: str) -> list[tuple[str, bytes]]:
    reader = store.reader()
    try:
        return reader.scan(ns, start, end)  # type: ignore[no-any-return]
    finally:
        reader.close()


def state_of(data_dir: Path) -> Path:
    """The data directory's state store: ``state/`` (RocksDB) when it exists, else
    ``state.sqlite``."""
    rocks = data_dir / "state"
    return rocks if rocks.is_dir() else data_dir / "state.sqlite"


def consumed(state: Path) -> int:
    """The offsets committed in ``state.sqlite`` or in a RocksDB ``state/`` directory, summed
    over partitions (0 before it exists)."""
    if state.is_dir():
        return sum(_rocks_offsets(state).values()) if (state / "CURRENT").exists() else 0
    if not state.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT COALESCE(SUM(next_offset), 0) FROM offsets").fetchone()
            return int(row[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _rocks_offsets(state: Path) -> dict[int, int]:
    from segflow.stream.state.rocksdb import RocksReader

    reader = RocksReader(state)
    try:
        return reader.offsets()
    finally:
        reader.close()


Dump = dict[str, list[tuple[str, bytes]]]


def dump_state(state: Path) -> Dump:
    """Every committed pair by namespace, in key order, and the offsets (``_offsets``); the
    outbox as one pair per change (``changes``), whatever rows the batches packed them in."""
    return changes_apart(_dump_rocks(state) if state.is_dir() else _dump_sqlite(state))


def changes_apart(dump: Dump) -> Dump:
    """``dump`` with its ``outbox`` rows as one ``(sequence, encoded change)`` per change (the
    rows a batch writes depend on where batches begin; the changes do not)."""
    from segflow.stream.outbox import decode_row, encode_change

    out = {ns: rows for ns, rows in dump.items() if ns != "outbox"}
    if "outbox" in dump:
        out["outbox"] = [
            (f"{seq:016x}", encode_change(change) if change is not None else b"")
            for key, value in dump["outbox"]
            for seq, change in enumerate(decode_row(value), start=int(key, 16))
        ]
    return out


def _dump_sqlite(state: Path) -> Dump:
    con = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    out: Dump = {}
    for ns, key, value in con.execute("SELECT ns, key, value FROM kv ORDER BY ns, key"):
        out.setdefault(ns, []).append((key, bytes(value)))
    offsets = con.execute(
        "SELECT partition, next_offset FROM offsets ORDER BY partition"
    ).fetchall()
    out["_offsets"] = [(str(p), str(o).encode()) for p, o in offsets]
    con.close()
    return out


def _dump_rocks(state: Path) -> Dump:
    from segflow.stream.state.rocksdb import SEP, RocksReader

    reader = RocksReader(state)
    out: Dump = {}
    try:
        for key, value in reader.items():
            if key.startswith(b"\xff"):  # offsets (below) and the store's own markers
                continue
            ns, _, name = key.decode().partition(SEP)
            out.setdefault(ns, []).append((name, value))
        offsets = sorted(reader.offsets().items())
    finally:
        reader.close()
    out["_offsets"] = [(str(p), str(o).encode()) for p, o in offsets]
    return out


def consumed_shared(dsn: str, schema: str) -> int:
    """The same for the state in PostgreSQL (``shared.dsn``; 0 before its tables exist)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        try:
            row = con.execute(
                f'SELECT COALESCE(SUM(next_offset), 0) FROM "{schema}".state_offsets'
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def general_path(handler: Any) -> None:
    """Send every event of ``handler`` through ``attribute`` and the resolver's walk: the
    general path the inline ones (``attribute_all``'s newcomer and returning person,
    ``_unrefused``) are compared with."""

    def attribute_all(batch: Any, records: Any, idents: Any, now_ms: int, *_: Any) -> None:
        for record, ids in zip(records, idents, strict=True):
            handler.attribute(batch, record, now_ms, ids)

    handler.attribute_all = attribute_all
    handler._unrefused = lambda *_: None  # the walk
