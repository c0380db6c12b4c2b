"""Wiring the processor from settings (used by ``segflow process`` and ``segflow serve``).

Where the state lives (:func:`state_backend`, ``stream.store``):

- ``rocksdb``: ``DATA_DIR/state/``, one writing process (:mod:`segflow.stream.state.rocksdb`);
  the default (``auto``) for the embedded log with one processor;
- ``sqlite``: ``DATA_DIR/state.sqlite``, which several processes on one host may share
  (:mod:`segflow.stream.state.sqlite`); ``auto`` picks it when processors share state — the
  kafka driver, or ``stream.optimistic = true`` — and when the data directory already has a
  ``state.sqlite`` and no ``state/`` (an upgrade keeps its state);
- ``postgres``: the shared database whenever ``shared.dsn`` is set (processors on many hosts:
  :mod:`segflow.stream.state.postgres`).

>>> import tempfile
>>> from segflow.config import load_settings
>>> s = load_settings(overrides={"server": {"data_dir": tempfile.mkdtemp()}})
>>> state_backend(s), state_path(s).name
('rocksdb', 'state')
>>> kafka = load_settings(overrides={"server": {"data_dir": "d"}, "log": {"driver": "kafka"}})
>>> state_backend(kafka), state_path(kafka).name
('sqlite', 'state.sqlite')
"""

from __future__ import annotations

from pathlib import Path

from segflow.clock import Clock
from segflow.config import Settings
from segflow.errors import ConfigError
from segflow.stream.evaluator import SegmentEvaluator
from segflow.stream.processor import Processor, ProcessorSettings, ReadableLog
from segflow.stream.reader import ProfileReader
from segflow.stream.state.base import StateReader, StateStore
from segflow.stream.state.sqlite import SqliteReader, SqliteStateStore

SQLITE_FILE = "state.sqlite"
ROCKSDB_DIR = "state"


def state_backend(settings: Settings) -> str:
    """``postgres``, ``rocksdb`` or ``sqlite``: see the module docstring. Raises
    ``ConfigError`` for ``stream.store = "rocksdb"`` where processors share the state."""
    store, data = settings.stream.store, settings.data_path
    if settings.shared.dsn:
        if store != "auto":
            raise ConfigError(
                f"stream.store = {store!r} with shared.dsn: the state is in the shared database"
            )
        return "postgres"
    shared = settings.log.driver == "kafka" or bool(settings.stream.optimistic)
    if store == "rocksdb" and shared:
        raise ConfigError(
            "stream.store = 'rocksdb' has one writing process: processors sharing state "
            "(the kafka driver, stream.optimistic) need 'sqlite' or shared.dsn"
        )
    if store != "auto":
        return store
    if shared:
        return "sqlite"
    upgraded = (data / SQLITE_FILE).exists() and not (data / ROCKSDB_DIR).exists()
    return "sqlite" if upgraded else "rocksdb"


def state_path(settings: Settings) -> Path:
    """``DATA_DIR/state/`` (RocksDB) or ``DATA_DIR/state.sqlite`` (also for PostgreSQL: the
    file a data directory would have)."""
    name = ROCKSDB_DIR if state_backend(settings) == "rocksdb" else SQLITE_FILE
    return settings.data_path / name


def processor_settings(settings: Settings) -> ProcessorSettings:
    """Batches are optimistic when processors share the store: with the kafka driver (they
    share the log's partitions) or a shared database (``stream.optimistic`` overrides); never
    on RocksDB (one writer)."""
    s = settings.stream
    shared = settings.log.driver == "kafka" or bool(settings.shared.dsn)
    optimistic = s.optimistic if s.optimistic is not None else shared
    if state_backend(settings) == "rocksdb":
        optimistic = False
    return ProcessorSettings(
        group=s.group,
        partitions=s.partitions,
        batch_size=s.batch_size,
        poll_interval_ms=s.poll_interval_ms,
        optimistic_tries=3 if optimistic else 0,
        working_profiles=s.working_profiles,
        gc_threshold=s.gc_threshold,
        gc_freeze=s.gc_freeze,
        kernel=s.kernel,
        dedupe_window_ms=settings.log.dedupe_window_ms if dedupes(settings) else 0,
    )


def dedupes(settings: Settings) -> bool:
    """Whether the processor drops duplicate message ids (``stream.dedupe``; ``auto``: with the
    kafka driver, where a collector dying between the broker's ack and its dedupe confirm
    lets a retried event be appended twice: :mod:`segflow.stream.dedupe`).

    >>> from segflow.config import load_settings
    >>> dedupes(load_settings()), dedupes(load_settings(overrides={"log": {"driver": "kafka"}}))
    (False, True)
    """
    mode = settings.stream.dedupe
    return mode == "on" or (mode == "auto" and settings.log.driver == "kafka")


def open_state_store(
    settings: Settings, *, write: bool = True, refresh_ms: float = 0.0
) -> StateStore:
    """The configured state store (module docstring). ``write=False``: a process that reads
    the state and never commits (``serve`` without the ``process`` role): on RocksDB its
    readers are secondaries, caught up with the writer at most every ``refresh_ms`` (0:
    before every read), and a transaction raises ``StateStoreReadOnly``."""
    backend = state_backend(settings)
    if backend == "postgres":
        from segflow.stream.state.postgres import PostgresStateStore

        return PostgresStateStore(settings.shared.dsn, settings.shared.schema)
    s = settings.stream
    if backend == "rocksdb":
        from segflow.stream.state.rocksdb import RocksReadOnlyStore, RocksStateStore

        if not write:
            return RocksReadOnlyStore(state_path(settings), refresh_ms=refresh_ms)
        return RocksStateStore(
            state_path(settings),
            sync=s.synchronous.upper() != "OFF",
            cache_mb=s.rocksdb_cache_mb,
            write_buffer_mb=s.rocksdb_write_buffer_mb,
            compression=s.rocksdb_compression,
        )
    return SqliteStateStore(state_path(settings), synchronous=s.synchronous)


def open_state_reader(settings: Settings) -> StateReader:
    """A committed-state reader of the configured store from a process that does not write
    it (SQLite: creates the file and schema when missing; RocksDB: reads as empty until a
    writer creates the store)."""
    backend = state_backend(settings)
    if backend == "postgres":
        from segflow.stream.state.postgres import postgres_reader

        return postgres_reader(settings.shared.dsn, settings.shared.schema)
    if backend == "rocksdb":
        from segflow.stream.state.rocksdb import open_reader

        return open_reader(state_path(settings))
    SqliteStateStore(state_path(settings)).close()  # creates the file and schema when missing
    return SqliteReader(state_path(settings))


def build_processor(
    settings: Settings,
    log: ReadableLog,
    *,
    evaluator: SegmentEvaluator | None = None,
    clock: Clock | None = None,
    write: bool = True,
    refresh_ms: float = 0.0,
) -> Processor:
    """A processor on the configured state store reading ``log`` with the identity rules
    (``write=False``: one that will not run, for a process that only reads its state, whose
    readers catch up at most every ``refresh_ms``: :func:`open_state_store`)."""
    store = open_state_store(settings, write=write, refresh_ms=refresh_ms)
    return Processor(log, store, evaluator, clock, processor_settings(settings), settings.identity)


def build_reader(
    settings: Settings, log: ReadableLog, store: StateStore | None = None
) -> ProfileReader:
    """A read-side view of the configured state store (``store``: through that store's own
    reader, e.g. the processor's in this process)."""
    reader = store.reader() if store is not None else open_state_reader(settings)
    return ProfileReader(reader, log, settings.identity)
