"""One in-process pipeline for tests of what users read back: a real SQLite log and state, the
processor on a manual clock, the DuckDB warehouse loader, the segment catalogue, and the
segment API served by uvicorn on loopback.

Use: ``with Pipeline(tmp_path, now_ms=T) as p: p.segment(name, rule); p.send(events)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from tests.support.net import free_port

from segflow.api.segments import segment_routes
from segflow.clock import ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.segments.service import SegmentService
from segflow.segments.store import DefinitionStore
from segflow.spec import Event
from segflow.stream import Processor, ProfileReader, SqliteStateStore
from segflow.warehouse.connection import connect
from segflow.warehouse.loader import WarehouseLoader


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on loopback in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # waiting for the server to listen, not for time logic
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def settle(processor: Processor, loader: WarehouseLoader) -> None:
    """Process everything in the log, then an idle round (queued ML attributes, timers, the
    start of a rule set's backfill), the backfill to its end, and load the warehouse."""
    while processor.run_once():
        pass
    processor.run_once()
    while processor.backfill_step():
        pass
    loader.run_until_idle()


def event(type: str, ts: int, mid: str, **fields: Any) -> Event:
    """An event received when it happened (``received_at_ms`` = ``timestamp_ms``)."""
    return Event(
        type=type, message_id=mid, source_id="web", timestamp_ms=ts, received_at_ms=ts, **fields
    )


class Pipeline:
    """Log -> processor -> warehouse, and the segment API over them, on one manual clock."""

    def __init__(self, tmp: Path, now_ms: int) -> None:
        self.clock = ManualClock(now_ms)
        self.log = SqliteEventLog(tmp / "log.sqlite", partitions=2)
        self.store = SqliteStateStore(tmp / "state.sqlite")
        self.processor = Processor(self.log, self.store, clock=self.clock)
        self.loader = WarehouseLoader(
            self.log, self.processor.change_feed(), tmp / "warehouse.duckdb", self.clock
        )
        path = tmp / "warehouse.duckdb"
        self.service = SegmentService(
            DefinitionStore(tmp / "catalog.sqlite"),
            warehouse=lambda: connect(path),
            clock=self.clock,
        )
        self.reader = ProfileReader(self.store.reader(), self.log)
        self._serving = serving(Starlette(routes=segment_routes(self.service, self.reader)))
        self.base = ""

    def __enter__(self) -> Pipeline:
        self.base = self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)
        self.loader.stop()
        self.reader.close()
        self.store.close()
        self.log.close()

    def segment(self, name: str, rule: str) -> None:
        """Create ``name`` and hand the new rule set to the processor (its backfill runs on
        the next :meth:`run`)."""
        self.service.put_segment(name, rule)
        self.processor.set_evaluator(self.service.program())

    def send(self, events: Sequence[Event]) -> None:
        """Append ``events`` and process them (and everything due) at the clock's time."""
        self.log.append(list(events))
        self.run()

    def run(self) -> None:
        while self.processor.run_once() > 0:
            pass
        self.processor.run_once()  # the backfill, timers and commands of an idle round
        self.loader.run_until_idle()

    def get(self, path: str) -> Any:
        found = httpx.get(self.base + path, timeout=30)
        assert found.status_code == 200, found.text
        return found.json()

    def profile_id(self, ident: str) -> str:
        profile = self.reader.lookup(*ident.split(":", 1))
        assert profile is not None, ident
        return profile.profile_id
