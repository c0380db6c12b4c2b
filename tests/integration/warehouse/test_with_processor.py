"""The loader fed by the real processor's change feed: attribution after a login merge."""

from __future__ import annotations

from pathlib import Path

from segflow.clock import ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.stream.processor import Processor
from segflow.stream.state import MemoryStateStore
from segflow.warehouse.connection import open_warehouse
from segflow.warehouse.loader import WarehouseLoader


def test_anonymous_history_follows_the_login_merge(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=4)
    clock = ManualClock(1_000)
    processor = Processor(log, MemoryStateStore(), clock=clock)
    loader = WarehouseLoader(log, processor.change_feed(), tmp_path / "warehouse.duckdb", clock)
    try:
        log.append([
            Event(type="page", message_id="p1", source_id="web", timestamp_ms=1_000, received_at_ms=1_000,
                  anonymous_id="anon-1", name="Home"),
            Event(type="track", message_id="t1", source_id="web", timestamp_ms=2_000, received_at_ms=2_000,
                  anonymous_id="anon-1", event="Product Viewed"),
        ])  # fmt: skip
        processor.run_once()
        loader.run_until_idle()  # anonymous events land first
        log.append([
            Event(type="identify", message_id="i1", source_id="web", timestamp_ms=3_000, received_at_ms=3_000,
                  anonymous_id="anon-1", user_id="user-1"),
            Event(type="track", message_id="t2", source_id="web", timestamp_ms=4_000, received_at_ms=4_000,
                  user_id="user-1", event="Order Completed", properties={"revenue": 5}),
        ])  # fmt: skip
        while processor.run_once():
            pass
        loader.run_until_idle()
        with open_warehouse(loader.path, read_only=True) as con:
            owners = con.execute("SELECT DISTINCT profile_id FROM profile_events").fetchall()
            n_events = con.execute("SELECT count(*) FROM profile_events").fetchall()
            n_changes = con.execute("SELECT count(*) FROM changes").fetchall()
    finally:
        log.close()
    assert n_events == [(4,)]
    assert len(owners) == 1, owners  # one person, one profile, whatever the merge order
    assert not owners[0][0].startswith(("user:", "anon:"))  # a real profile id, not the fallback
    assert n_changes[0][0] >= 2
