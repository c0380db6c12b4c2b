"""Wiring the processor from settings (used by ``segflow process`` and ``segflow serve``).

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
from segflow.stream.state.sqlite import SqliteReader, SqliteStateStore


def state_path(settings: Settings) -> Path:
    """``DATA_DIR/state.sqlite``."""
    return settings.data_path / "state.sqlite"


def processor_settings(settings: Settings) -> ProcessorSettings:
    s = settings.stream
    optimistic = s.optimistic if s.optimistic is not None else settings.log.driver == "kafka"
    return ProcessorSettings(
        group=s.group,
        partitions=s.partitions,
        batch_size=s.batch_size,
        poll_interval_ms=s.poll_interval_ms,
        optimistic_tries=3 if optimistic else 0,
    )


def build_processor(
    settings: Settings,
    log: ReadableLog,
    *,
    evaluator: SegmentEvaluator | None = None,
    clock: Clock | None = None,
) -> Processor:
    """A processor on ``DATA_DIR/state.sqlite`` reading ``log`` with the configured identity rules."""
    store = SqliteStateStore(state_path(settings), synchronous=settings.stream.synchronous)
    return Processor(log, store, evaluator, clock, processor_settings(settings), settings.identity)


def build_reader(settings: Settings, log: ReadableLog) -> ProfileReader:
    """A read-side view of ``DATA_DIR/state.sqlite`` (creates the file's schema when missing)."""
    SqliteStateStore(state_path(settings)).close()  # creates the file and schema when missing
    return ProfileReader(SqliteReader(state_path(settings)), log, settings.identity)
