"""Wiring the processor from settings (used by ``segflow process`` and ``segflow serve``).

The state lives in ``DATA_DIR/state.sqlite`` (one host), or in the shared PostgreSQL database
when ``shared.dsn`` is set (processors on many hosts: :mod:`segflow.stream.state.postgres`).

>>> import tempfile
>>> from segflow.config import load_settings
>>> s = load_settings(overrides={"server": {"data_dir": tempfile.mkdtemp()}})
>>> state_path(s).name
'state.sqlite'
"""

from __future__ import annotations

from pathlib import Path

from segflow.clock import Clock
from segflow.config import Settings
from segflow.stream.evaluator import SegmentEvaluator
from segflow.stream.processor import Processor, ProcessorSettings, ReadableLog
from segflow.stream.reader import ProfileReader
from segflow.stream.state.base import StateReader, StateStore
from segflow.stream.state.sqlite import SqliteReader, SqliteStateStore


def state_path(settings: Settings) -> Path:
    """``DATA_DIR/state.sqlite``."""
    return settings.data_path / "state.sqlite"


def processor_settings(settings: Settings) -> ProcessorSettings:
    """Batches are optimistic when processors share the store: with the kafka driver (they
    share the log's partitions) or a shared database (``stream.optimistic`` overrides)."""
    s = settings.stream
    shared = settings.log.driver == "kafka" or bool(settings.shared.dsn)
    optimistic = s.optimistic if s.optimistic is not None else shared
    return ProcessorSettings(
        group=s.group,
        partitions=s.partitions,
        batch_size=s.batch_size,
        poll_interval_ms=s.poll_interval_ms,
        optimistic_tries=3 if optimistic else 0,
    )


def open_state_store(settings: Settings) -> StateStore:
    """The configured state store: PostgreSQL at ``shared.dsn``, else ``DATA_DIR/state.sqlite``."""
    if settings.shared.dsn:
        from segflow.stream.state.postgres import PostgresStateStore

        return PostgresStateStore(settings.shared.dsn, settings.shared.schema)
    return SqliteStateStore(state_path(settings), synchronous=settings.stream.synchronous)


def open_state_reader(settings: Settings) -> StateReader:
    """A committed-state reader of the configured store (creates the schema when missing)."""
    if settings.shared.dsn:
        from segflow.stream.state.postgres import postgres_reader

        return postgres_reader(settings.shared.dsn, settings.shared.schema)
    SqliteStateStore(state_path(settings)).close()  # creates the file and schema when missing
    return SqliteReader(state_path(settings))


def build_processor(
    settings: Settings,
    log: ReadableLog,
    *,
    evaluator: SegmentEvaluator | None = None,
    clock: Clock | None = None,
) -> Processor:
    """A processor on the configured state store reading ``log`` with the identity rules."""
    store = open_state_store(settings)
    return Processor(log, store, evaluator, clock, processor_settings(settings), settings.identity)


def build_reader(settings: Settings, log: ReadableLog) -> ProfileReader:
    """A read-side view of the configured state store."""
    return ProfileReader(open_state_reader(settings), log, settings.identity)
