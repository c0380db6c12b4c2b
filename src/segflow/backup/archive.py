"""``segflow backup`` and ``segflow restore``: a consistent copy of a data directory.

A backup is a directory: one file per store, the data directory's other files (the console's
signing secret, keys) as they are, and ``manifest.json`` (written last: a backup without it
is incomplete) with each file's size and SHA-256 and the *consistent point*: the log's end
offsets, every consumer's offsets and cursors, as of the one instant all stores were copied.

How one instant is had while segflow runs: the warehouse is held still and checkpointed
(:mod:`segflow.backup.warehouse`), the RocksDB state's commits are held (its ``commit.lock``,
taken by every commit for its one write) while the SQLite files are pinned at one instant
(:mod:`segflow.backup.snapshot`) and a frozen secondary instance of the state is opened, then
released; the warehouse file is copied and released, then each SQLite snapshot is copied
with SQLite's online backup API, and the frozen state into a new RocksDB directory
(``state/``: a logical, compacted copy), while writers go on.

>>> import tempfile, os
>>> from segflow.log.sqlite import SqliteEventLog
>>> data, out = tempfile.mkdtemp(), os.path.join(tempfile.mkdtemp(), "b")
>>> SqliteEventLog(os.path.join(data, "log.sqlite"), partitions=2).close()
>>> manifest = create_backup(data, out)
>>> [f.name for f in manifest.files], manifest.point["log"]["end_offsets"]
(['log.sqlite'], {'0': 0, '1': 0})
>>> restore_backup(out, os.path.join(tempfile.mkdtemp(), "restored")).version == manifest.version
True
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec

from segflow.backup.exceptions import BackupCorrupt, TargetNotEmpty
from segflow.backup.snapshot import BackupBusy, copy_pinned, pinned
from segflow.backup.warehouse import hold_exclusively
from segflow.db.files import fsync_path

if TYPE_CHECKING:
    from segflow.stream.state.rocksdb import RocksReader

MANIFEST = "manifest.json"
# syncs.sqlite: pinned with the log, so a restored cursor is never ahead of the restored log;
# keys.sqlite (the Kafka driver's crypto-shredding keys): copied consistently, since without
# them a restored deployment could not read its own topic (docs/privacy.md: a backup taken
# before a deletion can read the deleted person's records: keep it no longer than the bound)
SQLITE_STORES = (
    "delivery.sqlite", "state.sqlite", "log.sqlite", "catalog.sqlite", "syncs.sqlite",
    "keys.sqlite",
)  # fmt: skip
ROCKSDB_STATE = "state"  # the RocksDB state's directory (segflow.stream.state.rocksdb)
DEDUPE_RUNS = "log.dedupe"  # the log's sealed dedupe runs (segflow.log.dedupe_runs)
WAREHOUSE = "warehouse.duckdb"
_SIDE_SUFFIXES = ("-wal", "-shm", "-journal", ".wal", ".tmp")
_CHUNK = 1 << 20

WarehouseHold = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection | None]]
WhileLocked = Callable[[dict[str, sqlite3.Connection], duckdb.DuckDBPyConnection | None], None]


class BackupFile(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    bytes: int
    sha256: str
    kind: str  # sqlite | duckdb | rocksdb (a file of the state directory) | file


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """What a backup holds (``manifest.json``)."""

    format: int = 1
    version: str
    created_at_ms: int
    duration_ms: int
    files: list[BackupFile]
    point: dict[str, Any]


def create_backup(
    data_dir: str | Path,
    out: str | Path,
    *,
    hold: WarehouseHold | None = None,
    lock_timeout_s: float = 30.0,
    while_locked: WhileLocked | None = None,
) -> Manifest:
    """Back up ``data_dir`` into the new (or empty) directory ``out`` (module docstring).

    ``hold`` holds the warehouse still (default: open it in this process); ``while_locked``
    runs at the consistent point, while every store is still held (tests use it).
    """
    data, target = Path(data_dir), Path(out)
    _prepare_target(target)
    started = time.time_ns() // 1_000_000
    stores = [data / name for name in SQLITE_STORES if (data / name).exists()]
    rocks = data / ROCKSDB_STATE
    hold = hold or (lambda: hold_exclusively(data / WAREHOUSE, timeout_s=lock_timeout_s))
    files: list[BackupFile] = []
    with contextlib.ExitStack() as pins:
        with hold() as warehouse:

            def at_point(readers: dict[str, sqlite3.Connection]) -> None:
                if while_locked is not None:
                    while_locked(readers, warehouse)

            with _state_held(rocks, lock_timeout_s):
                readers = pins.enter_context(
                    pinned(stores, timeout_s=lock_timeout_s, while_locked=at_point)
                )
                state = _frozen_state(rocks, pins)
            point = consistent_point(readers, warehouse, state)
            if warehouse is not None:
                files.append(_copy_file(data / WAREHOUSE, target, WAREHOUSE, "duckdb"))
        # the warehouse is released; the SQLite snapshots stay pinned while they are copied
        for path, reader in readers.items():
            name = Path(path).name
            copy_pinned(reader, target / name)
            files.append(_describe(target, name, "sqlite"))
        if state is not None:
            files.extend(_copy_state(state, target))
    files.extend(_copy_extras(data, target))
    manifest = Manifest(
        version=_version(),
        created_at_ms=started,
        duration_ms=time.time_ns() // 1_000_000 - started,
        files=sorted(files, key=lambda f: f.name),
        point=point,
    )
    _write_manifest(target, manifest)
    return manifest


def _state_held(rocks: Path, timeout_s: float) -> AbstractContextManager[None]:
    """The RocksDB state's commits held (nothing when the state is elsewhere)."""
    if not (rocks / "CURRENT").exists():
        return contextlib.nullcontext()
    from segflow.stream.state.rocksdb import commits_held

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        try:
            with commits_held(rocks, timeout_s=timeout_s):
                yield
        except TimeoutError as exc:
            raise BackupBusy(str(exc)) from exc

    return held()


def _frozen_state(rocks: Path, pins: contextlib.ExitStack) -> RocksReader | None:
    if not (rocks / "CURRENT").exists():
        return None
    from segflow.stream.state.rocksdb import RocksReader

    return pins.enter_context(contextlib.closing(RocksReader(rocks, follow=False)))


def _copy_state(state: RocksReader, target: Path) -> list[BackupFile]:
    from segflow.stream.state.rocksdb import copy_state

    copy_state(state, target / ROCKSDB_STATE)
    out = []
    for path in sorted((target / ROCKSDB_STATE).iterdir()):
        fsync_path(path)
        out.append(_describe(target, f"{ROCKSDB_STATE}/{path.name}", "rocksdb"))
    fsync_path(target / ROCKSDB_STATE)
    return out


def consistent_point(
    readers: dict[str, sqlite3.Connection],
    warehouse: duckdb.DuckDBPyConnection | None,
    state: RocksReader | None = None,
) -> dict[str, Any]:
    """Offsets and cursors of every store, read in the pinned snapshots (``state``: the
    frozen RocksDB state, when the state is there)."""
    by_name = {Path(p).name: con for p, con in readers.items()}
    point: dict[str, Any] = {}
    if (log := by_name.get("log.sqlite")) is not None:
        point["log"] = {
            "end_offsets": _pairs(log, "SELECT partition, next_offset FROM partitions"),
            "consumers": _groups(log),
        }
    if (kv := by_name.get("state.sqlite")) is not None:
        seq = kv.execute("SELECT value FROM kv WHERE ns='meta' AND key='outbox_seq'").fetchone()
        point["state"] = {
            "offsets": _pairs(kv, "SELECT partition, next_offset FROM offsets"),
            "outbox_seq": int(seq[0]) if seq else 0,
        }
    if state is not None:
        seq = state.get("meta", "outbox_seq")
        point["state"] = {
            "offsets": {str(p): o for p, o in sorted(state.offsets().items())},
            "outbox_seq": int(seq) if seq else 0,
        }
    if (delivery := by_name.get("delivery.sqlite")) is not None:
        point["delivery"] = {"cursors": _pairs(delivery, "SELECT name, seq FROM cursors")}
    if warehouse is not None:
        rows = warehouse.execute("SELECT name, position FROM warehouse_cursors").fetchall()
        point["warehouse"] = {"cursors": {str(k): int(v) for k, v in sorted(rows)}}
    return point


def _pairs(con: sqlite3.Connection, sql: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(con.execute(sql).fetchall())}


def _groups(log: sqlite3.Connection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for grp, partition, offset in log.execute(
        "SELECT grp, partition, offset FROM consumer_offsets ORDER BY grp, partition"
    ):
        out.setdefault(grp, {})[str(partition)] = int(offset)
    return out


def restore_backup(backup: str | Path, data_dir: str | Path, *, force: bool = False) -> Manifest:
    """Check ``backup`` against its manifest and copy it into ``data_dir``, which must be
    empty or missing (``force``: replace segflow's files in it). Stop segflow first."""
    source, target = Path(backup), Path(data_dir)
    manifest = verify_backup(source)
    if target.exists() and any(target.iterdir()):
        if not force:
            raise TargetNotEmpty(
                f"{target} is not empty (restore into an empty directory, or pass --force)"
            )
        _clear(target, manifest)
    target.mkdir(parents=True, exist_ok=True)
    for entry in manifest.files:
        partial = target / (entry.name + ".tmp")
        partial.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / entry.name, partial)
        fsync_path(partial)
        os.replace(partial, target / entry.name)
    fsync_path(target)
    return manifest


def verify_backup(backup: str | Path) -> Manifest:
    """The backup's manifest, after checking every file's size and checksum."""
    source = Path(backup)
    try:
        manifest = msgspec.json.decode((source / MANIFEST).read_bytes(), type=Manifest)
    except (OSError, msgspec.MsgspecError) as exc:
        raise BackupCorrupt(MANIFEST, f"missing or unreadable: {exc}") from exc
    for entry in manifest.files:
        path = source / entry.name
        if not path.is_file():
            raise BackupCorrupt(entry.name, "missing from the backup")
        if path.stat().st_size != entry.bytes or _sha256(path) != entry.sha256:
            raise BackupCorrupt(entry.name, "size or checksum differs from the manifest")
    return manifest


# -- files -----------------------------------------------------------------------------------


def _prepare_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TargetNotEmpty(f"{target} exists and is not an empty directory")
    target.mkdir(parents=True, exist_ok=True)


def _copy_file(source: Path, root: Path, name: str, kind: str) -> BackupFile:
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    fsync_path(target)
    return _describe(root, name, kind)


def _copy_extras(data: Path, target: Path) -> list[BackupFile]:
    """Every other file of the data directory (secrets, keys), copied as it is."""
    out = []
    stores = (*SQLITE_STORES, WAREHOUSE)
    for path in sorted(p for p in data.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.is_relative_to(target) or path.name.startswith(stores):
            continue  # the stores (and their -wal/-shm/.wal files) are copied above
        if path.is_relative_to(data / ROCKSDB_STATE):
            continue  # the RocksDB state is copied above (logically)
        if path.is_relative_to(data / DEDUPE_RUNS):
            continue  # derived from log.sqlite's dedupe_log, rebuilt from it when missing
        if path.name.endswith(_SIDE_SUFFIXES):
            continue
        out.append(_copy_file(path, target, path.relative_to(data).as_posix(), "file"))
    return out


def _describe(root: Path, name: str, kind: str) -> BackupFile:
    path = root / name
    return BackupFile(name=name, bytes=path.stat().st_size, sha256=_sha256(path), kind=kind)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(target: Path, manifest: Manifest) -> None:
    partial = target / (MANIFEST + ".tmp")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2))
    fsync_path(partial)
    os.replace(partial, target / MANIFEST)
    fsync_path(target)


def _clear(target: Path, manifest: Manifest) -> None:
    shutil.rmtree(target / ROCKSDB_STATE, ignore_errors=True)  # whichever store the backup has
    names = {f.name for f in manifest.files} | {*SQLITE_STORES, WAREHOUSE}
    for name in names:
        for suffix in ("", *_SIDE_SUFFIXES):
            with contextlib.suppress(FileNotFoundError):
                (target / (name + suffix)).unlink()


def _version() -> str:
    from segflow import __version__

    return __version__
