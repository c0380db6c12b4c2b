"""A data directory (a real SQLite log, catalog and sync store) and the vendors' APIs on
loopback (tests/support/vendors.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.vendors import VendorApi, person

from segflow.clock import ManualClock
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.syncs.auth import Credential
from segflow.syncs.fetch import Retries
from segflow.syncs.runner import SyncRunner
from segflow.syncs.store import SyncDefinition, SyncStore, open_store

T0 = 1_700_000_000_000
TOKEN = "vendor-token"
QUICK = Retries(attempts=3, backoff_s=0.01, max_delay_s=5.0)


@dataclass
class World:
    data: Path
    clock: ManualClock
    log: SqliteEventLog
    catalog: SourceCatalog
    ingestor: Ingestor
    store: SyncStore
    runner: SyncRunner
    api: VendorApi

    def sync(
        self,
        vendor: str,
        *objects: str,
        name: str | None = None,
        credential: str | Credential = TOKEN,
    ) -> str:
        """Add a sync of ``vendor`` pointed at the loopback API; returns its name."""
        name = name or vendor
        definition = SyncDefinition(
            name=name, vendor=vendor, source="crm", base_url=self.api.url, objects=objects
        )
        self.store.create(definition, credential)
        return name

    def people(self, vendor: str, count: int, start_ms: int = T0) -> str:
        """``count`` people of ``vendor``, one a second; returns the object's name."""
        obj = ""
        for n in range(1, count + 1):
            obj, record = person(vendor, n, f"p{n}@example.com", start_ms + n * 1000)
            self.api.add(vendor, obj, record)
        return obj

    def stored(self) -> list[Event]:
        """Every stored event."""
        return [r.event for p in range(self.log.partitions) for r in self.log.read(p, 0, 100_000)]

    def events(self) -> list[tuple[str, str]]:
        """Every stored event as (type, messageId)."""
        out = []
        for partition in range(self.log.partitions):
            for record in self.log.read(partition, 0, 100_000):
                out.append((record.event.type, record.event.message_id))
        return out


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = ManualClock(T0 + 3_600_000)
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2, clock=clock)
    catalog = SourceCatalog(tmp_path / "catalog.sqlite", clock=clock)
    catalog.create("crm")
    ingestor = Ingestor(log, catalog)
    store = open_store(tmp_path)
    runner = SyncRunner(store, ingestor, clock=clock, retries=QUICK, lock_dir=tmp_path / "run")
    api = VendorApi(token=TOKEN, page_size=3)
    yield World(tmp_path, clock, log, catalog, ingestor, store, runner, api)
    api.close()
    store.close()
    catalog.close()
    log.close()
