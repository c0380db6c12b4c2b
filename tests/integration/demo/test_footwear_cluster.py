"""The demo's footwear_prospect is a discovered cluster, joined live.

Real parts: the demo's simulated shop (``segflow.demo.simulator``) in a SQLite log, the
processor (SQLite state), the warehouse loader into a DuckDB file, and the cluster job training
the demo's live K-Means (``definitions.LIVE_MODELS``) on features computed by the segment
language's SQL compiler; the demo's own choice of the footwear cluster and its segment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from tests.support.pipeline import settle

from segflow.clock import HOUR_MS, MINUTE_MS, ManualClock
from segflow.demo import definitions
from segflow.demo.catalog import PRODUCTS
from segflow.demo.simulator import Message, Simulator
from segflow.log.sqlite import SqliteEventLog
from segflow.ml.jobs import JobContext, run_job
from segflow.ml.registry import ModelSpec, Registry
from segflow.rules import compile_segments
from segflow.spec import Event, MembershipChange
from segflow.spec.normalize import normalize, parse_time_ms
from segflow.spec.wire import decode_message
from segflow.stream import Processor, ProfileReader, SqliteStateStore
from segflow.warehouse.loader import WarehouseLoader

NOW = 1_780_000_000_000
MODEL = definitions.CLUSTER_MODEL


def to_event(message: Message) -> Event:
    wire = decode_message(msgspec.json.encode(message))
    at = parse_time_ms(message["timestamp"])
    return normalize(wire, message["type"], source_id="shop", received_at_ms=at)


@dataclass
class Shop:
    clock: ManualClock
    log: SqliteEventLog
    processor: Processor
    reader: ProfileReader
    loader: WarehouseLoader
    footwear: int

    def settle(self) -> None:
        settle(self.processor, self.loader)

    def visit(self, visitor: str, views: list[str], search: str | None = None) -> int:
        """A new anonymous visitor's first page views (product ids), a minute after NOW."""
        by_id = {p.product_id: p for p in PRODUCTS}
        at = NOW + MINUTE_MS
        self.clock.set(at + MINUTE_MS)
        steps: list[dict[str, Any]] = [{"type": "page", "name": "Home"}]
        if search:
            steps.append({"type": "track", "event": "Products Searched", "properties": {"query": search}})  # fmt: skip
        steps += [
            {"type": "track", "event": "Product Viewed",
             "properties": {"product_id": p, "name": by_id[p].name, "category": by_id[p].category}}
            for p in views
        ]  # fmt: skip
        self.log.append(
            [
                Event(type=s["type"], source_id="shop", message_id=f"{visitor}-{i}",
                      timestamp_ms=at + i, received_at_ms=at + i, anonymous_id=visitor,
                      event=s.get("event"), name=s.get("name"), properties=s.get("properties", {}))
                for i, s in enumerate(steps)
            ]
        )  # fmt: skip
        return len(steps)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    clock = ManualClock(NOW)
    processor = Processor(log, SqliteStateStore(tmp_path / "state.sqlite"), clock=clock)
    reader = ProfileReader(processor.store.reader(), log)
    loader = WarehouseLoader(log, processor.change_feed(), tmp_path / "warehouse.duckdb", clock)
    processor.set_evaluator(compile_segments({}))  # the live model adds its traits
    history = Simulator(people=300, seed=42).history(end_ms=NOW - HOUR_MS, days=14)
    log.append([to_event(m) for m in history])
    found = Shop(clock, log, processor, reader, loader, footwear=-1)
    found.settle()
    con = duckdb.connect(str(loader.path))
    try:
        spec = msgspec.convert({"name": MODEL, **definitions.LIVE_MODELS[MODEL]}, ModelSpec)
        Registry(con).put_model(spec, now_ms=NOW)
        run = run_job(JobContext(con=con, clock=clock, sink=processor, threads=1), MODEL, "cluster")
    finally:
        con.close()
    found.footwear = definitions.footwear_cluster(run.metrics["cards"])
    processor.set_evaluator(compile_segments(definitions.cluster_segments(found.footwear)))
    found.settle()
    yield found
    reader.close()
    processor.store.close()
    log.close()


def entered(shop: Shop, profile_id: str) -> set[str]:
    return {
        c.segment
        for _, c in shop.processor.change_feed().read(0, 10_000_000)
        if isinstance(c, MembershipChange) and c.profile_id == profile_id and c.kind == "entered"
    }


def test_a_new_visitor_browsing_shoes_joins_the_footwear_cluster_in_the_batch_of_her_events(
    shop: Shop,
) -> None:
    sent = shop.visit("anon_shoes", ["sku-trail-1", "sku-road-1"])  # the home page, two shoes
    assert shop.processor.run_once() == sent  # one batch: her first events

    profile = shop.reader.lookup("anonymous_id", "anon_shoes")
    assert profile is not None
    assert profile.cluster_ids[MODEL] == shop.footwear
    assert "footwear_prospect" in profile.members
    assert entered(shop, profile.profile_id) == {"footwear_prospect"}


def test_a_new_visitor_browsing_jackets_is_not_a_footwear_prospect(shop: Shop) -> None:
    sent = shop.visit("anon_jackets", ["sku-jkt-1", "sku-jkt-2", "sku-jkt-3"])
    assert shop.processor.run_once() == sent

    profile = shop.reader.lookup("anonymous_id", "anon_jackets")
    assert profile is not None and MODEL in profile.cluster_ids  # clustered live, elsewhere
    assert profile.cluster_ids[MODEL] != shop.footwear
    assert "footwear_prospect" not in profile.members
