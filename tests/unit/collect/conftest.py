from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segflow.catalog.db import CatalogTarget
from segflow.clock import ManualClock
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor
from segflow.log.sqlite import SqliteEventLog

NOW_MS = 1_700_000_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW_MS)


@pytest.fixture
def log(tmp_path: Path, clock: ManualClock) -> Iterator[SqliteEventLog]:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2, clock=clock)
    yield log
    log.close()


@pytest.fixture
def catalog(catalog_target: CatalogTarget, clock: ManualClock) -> Iterator[SourceCatalog]:
    catalog = SourceCatalog(catalog_target, clock=clock)
    yield catalog
    catalog.close()


@pytest.fixture
def ingestor(log: SqliteEventLog, catalog: SourceCatalog) -> Ingestor:
    return Ingestor(log, catalog)
