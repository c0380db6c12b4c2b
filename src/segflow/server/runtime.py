"""The shared stores of one data directory, opened once per serve process.

>>> import tempfile
>>> from segflow.config import load_settings
>>> rt = Runtime.open(load_settings(overrides={"server": {"data_dir": tempfile.mkdtemp()}}))
>>> rt.catalog.list()
[]
>>> rt.close()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segflow.clock import Clock, WallClock
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor
from segflow.config import Settings
from segflow.errors import ConfigError
from segflow.log.sqlite import SqliteEventLog


@dataclass
class Runtime:
    """The event log, the source catalog and the ingestion service of a data directory."""

    settings: Settings
    log: SqliteEventLog
    catalog: SourceCatalog
    ingestor: Ingestor
    clock: Clock

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        if settings.log.driver != "sqlite":
            raise ConfigError(f"unknown log driver {settings.log.driver!r} (available: sqlite)")
        clock = clock or WallClock()
        data = Path(settings.server.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        log = SqliteEventLog(
            data / "log.sqlite",
            partitions=settings.log.partitions,
            dedupe_window_ms=settings.log.dedupe_window_ms,
            max_pending_events=settings.log.max_pending_events,
            clock=clock,
        )
        catalog = SourceCatalog(data / "catalog.sqlite", clock=clock)
        return cls(settings, log, catalog, Ingestor(log, catalog, settings.collect), clock)

    def close(self) -> None:
        """Finish pending appends and close the stores."""
        self.log.close()
        self.catalog.close()
