"""Every part of a serve process in the test's own process, for the privacy tests (real
``segflow serve`` processes and webhook receivers come from tests/conftest.py's factories)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.wait import until


class Composed:
    """Every part of a serve process, wired by ``segflow.server.compose``, in this process.

    The services run (processor, loader, delivery, ...) except the regulation runner, which
    the test drives with :meth:`regulate` (``runner.run_once``), so a test decides when a
    regulation runs and can interrupt it.
    """

    def __init__(self, data: Path, **overrides: Any) -> None:
        from segflow.config import load_settings
        from segflow.server.compose import assemble
        from segflow.serving.runtime import Runtime

        sections: dict[str, Any] = {
            "server": {"data_dir": str(data)},
            "ml": {"schedule_enabled": False},
            "warehouse": {"flush_interval_ms": 50},
            "stream": {"poll_interval_ms": 20},
            "privacy": {"notify_timeout_s": 10.0, "step_timeout_s": 60.0},
        }
        for name, values in overrides.items():
            sections.setdefault(name, {}).update(values)
        self.data = data
        self.runtime = Runtime.open(load_settings(env={}, overrides=sections))
        self.parts = assemble(self.runtime)
        assert self.parts.privacy is not None
        self.privacy = self.parts.privacy
        self.source, _ = self.runtime.catalog.create("web")
        self.started = [s for s in self.parts.services if s is not self.privacy.runner]
        for service in self.started:
            service.start()

    def ingest(self, *messages: dict[str, Any]) -> Any:
        """Messages through the collector's ingestion service (acknowledged once durable)."""
        now = int(time.time() * 1000)
        return self.runtime.ingestor.ingest(self.source, list(messages), received_at_ms=now)

    def settled(self) -> None:
        """Wait until the processor and the loader have consumed the whole log."""
        from segflow.warehouse.connection import connect, warehouse_path
        from segflow.warehouse.loader import read_cursors

        end = self.runtime.log.end_offsets()

        def done() -> bool:
            tx = self.parts.processor.store.begin_global()
            try:
                processed = all(tx.get_offset(p) >= o for p, o in end.items())
            finally:
                tx.rollback()
            con = connect(warehouse_path(self.data))
            try:
                cursors = read_cursors(con)
            finally:
                con.close()
            loaded = all(cursors.get(f"log:{p}", 0) >= o for p, o in end.items())
            return processed and loaded

        until(done)

    def wait(self, predicate: Callable[[], Any], deadline_s: float = 60.0) -> Any:
        return until(predicate, deadline_s)

    def regulate(self, kind: str, *identifiers: tuple[str, str]) -> Any:
        """Submit a regulation and run the runner until it is no longer open."""
        reg = self.privacy.service.submit(
            kind, [{"type": t, "value": v} for t, v in identifiers], actor="test"
        )
        self.privacy.runner.run_once()
        return self.privacy.service.get(reg.id)

    def profile(self, id_type: str, value: str) -> Any:
        """The committed profile of an identifier (None when there is none)."""
        from segflow.stream.compose import build_reader

        reader = build_reader(self.runtime.settings, self.runtime.log)
        try:
            return reader.lookup(id_type, value)
        finally:
            reader.reader.close()

    def warehouse(self, sql: str, *args: Any) -> list[Any]:
        from segflow.warehouse.connection import connect, warehouse_path

        con = connect(warehouse_path(self.data))
        try:
            return con.execute(sql, list(args)).fetchall()
        finally:
            con.close()

    def close(self) -> None:

        for service in reversed(self.started):
            service.stop()
        self.runtime.close()


@pytest.fixture
def composed(tmp_path: Path) -> Iterator[Callable[..., Composed]]:
    made: list[Composed] = []

    def make(**overrides: Any) -> Composed:
        parts = Composed(tmp_path / f"data{len(made)}", **overrides)
        made.append(parts)
        return parts

    yield make
    for parts in made:
        parts.close()
