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

from segflow.catalog.db import catalog_target
from segflow.clock import Clock, WallClock
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor
from segflow.config import Settings
from segflow.log.base import ServedLog
from segflow.log.drivers import open_event_log


@dataclass
class Runtime:
    """The event log, the source catalog and the ingestion service of a data directory."""

    settings: Settings
    log: ServedLog
    catalog: SourceCatalog
    ingestor: Ingestor
    clock: Clock

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        clock = clock or WallClock()
        log = open_event_log(settings, clock=clock)  # makes the data directory
        catalog = SourceCatalog(catalog_target(settings), clock=clock)  # file or shared.dsn
        return cls(settings, log, catalog, Ingestor(log, catalog, settings.collect), clock)

    def close(self) -> None:
        """Finish pending appends and close the stores."""
        self.log.close()
        self.catalog.close()
