"""End-to-end delivery to real receivers on loopback (allow-listed)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest
from standardwebhooks import Webhook
from tests.support.wait import until

from segflow.activate.payloads import DictProfiles
from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore
from segflow.activate.worker import DeliveryWorker
from segflow.clock import MINUTE_MS, ManualClock

ALLOW = ["127.0.0.1/32"]


def setup(
    tmp_path: Path, feed: Any, clock: Any = None
) -> tuple[DeliveryStore, ActivationService, DeliveryWorker]:
    store = DeliveryStore(tmp_path / "delivery.sqlite")
    lookup = DictProfiles(identities={f"p{i}": [("user_id", f"u{i}")] for i in range(20)})
    service = ActivationService(store, guard=UrlGuard(ALLOW), lookup=lookup, clock=clock)
    worker = DeliveryWorker(
        store, feed, lookup, guard=UrlGuard(ALLOW), clock=clock, poll_interval_ms=20
    )
    return store, service, worker


def items_of(body: bytes) -> list[dict[str, Any]]:
    """The changes one request carries (one, or a batch's)."""
    doc = msgspec.json.decode(body)
    return [p["data"] for p in doc["data"]] if doc["type"] == "batch" else [doc["data"]]


@pytest.mark.parametrize("batch_max", [1, 5])
def test_receiver_failing_for_minutes_gets_every_change_in_order(
    tmp_path: Path, receiver_factory: Any, sqlite_feed: Any, make_changes: Any, batch_max: int
) -> None:
    clock = ManualClock(1_700_000_000_000)
    recovers_at = clock.now_ms() + 5 * MINUTE_MS
    receiver = receiver_factory(
        lambda n, h, b: (500, {}, 0.0) if clock.now_ms() < recovers_at else (200, {}, 0.0)
    )
    store, service, worker = setup(tmp_path, sqlite_feed, clock)
    _, secret = service.create_destination(
        {"name": "crm", "url": receiver.url, "backoff_base_ms": 1_000, "concurrency": 4,
         "batch_max": batch_max}
    )  # fmt: skip
    service.subscribe("crm", "vip")
    sent = make_changes(profiles=6, per_profile=8)
    for change in sent:
        sqlite_feed.append(change)

    async def drive() -> None:
        for _ in range(400):
            await worker.run_pass()
            if store.stats("crm").pending == 0:
                break
            clock.advance(15_000)
        await worker.aclose()

    asyncio.run(drive())

    stats = store.stats("crm")
    assert (stats.pending, stats.dead, stats.delivered) == (0, 0, len(sent))
    hook = Webhook(secret)
    for request in receiver.requests:
        hook.verify(request.body, request.headers)  # every attempt, failed or not
    by_id: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for request in receiver.requests:
        ids = tuple(sorted(i["id"] for i in items_of(request.body)))
        by_id[request.headers["webhook-id"]].add(ids)
        if batch_max == 1:
            assert ids == (request.headers["webhook-id"],)
    assert all(len(sets) == 1 for sets in by_id.values())  # a duplicate is the same change(s)
    delivered: dict[str, list[int]] = defaultdict(list)
    for request in receiver.ok():
        for data in items_of(request.body):
            delivered[data["profile_id"]].append(data["sequence"])
    assert delivered == {f"p{p}": list(range(1, 9)) for p in range(6)}  # all, once, in order
    assert any(r.status == 500 for r in receiver.requests)


def test_hanging_and_dead_receivers_do_not_delay_the_others(
    tmp_path: Path, receiver_factory: Any, sqlite_feed: Any, make_changes: Any
) -> None:
    hanging = receiver_factory(lambda n, h, b: (200, {}, 60.0))
    fast = receiver_factory()
    closed = receiver_factory()
    closed.close()  # nothing listens there any more: connections are refused
    store, service, worker = setup(tmp_path, sqlite_feed)
    service.create_destination({"name": "slow", "url": hanging.url, "timeout_ms": 60_000})
    service.create_destination({"name": "fast", "url": fast.url})
    service.create_destination({"name": "dead", "url": closed.url, "backoff_base_ms": 10})
    for name in ("slow", "fast", "dead"):
        service.subscribe(name, "vip")
    worker.start()
    try:
        for change in make_changes(profiles=10, per_profile=4):
            sqlite_feed.append(change)
        worker.notify()
        assert until(lambda: store.stats("fast").delivered == 40)
        assert len(fast.ok()) == 40
        assert hanging.ok() == []  # still hanging while "fast" got everything
        assert store.stats("slow").pending == 40 and store.stats("dead").pending == 40
        refused = lambda: any(  # noqa: E731
            "ConnectError" in (d["delivery"].last_error or "") for d in service.deliveries("dead")
        )
        assert until(refused)  # tried, refused, retrying
    finally:
        hanging.release.set()
        worker.stop()


def test_live_delivery_with_batching(
    tmp_path: Path, receiver_factory: Any, sqlite_feed: Any, make_changes: Any
) -> None:
    receiver = receiver_factory()
    store, service, worker = setup(tmp_path, sqlite_feed)
    _, secret = service.create_destination(
        {"name": "bulk", "url": receiver.url, "batch_max": 20, "batch_wait_ms": 20}
    )
    service.subscribe("bulk", "vip")
    worker.start()
    try:
        for change in make_changes(profiles=15, per_profile=2):
            sqlite_feed.append(change)
        worker.notify()
        assert until(lambda: store.stats("bulk").delivered == 30)
    finally:
        worker.stop()
    hook = Webhook(secret)
    items = []
    for request in receiver.ok():
        hook.verify(request.body, request.headers)
        body = msgspec.json.decode(request.body)
        items += [p["data"] for p in body["data"]] if body["type"] == "batch" else [body["data"]]
    assert len({i["id"] for i in items}) == 30
    assert len(receiver.ok()) < 30  # some requests carried several changes


def test_the_webhook_carries_when_a_change_held_and_when_it_was_recorded(
    tmp_path: Path, receiver_factory: Any, sqlite_feed: Any
) -> None:
    from segflow.spec import MembershipChange

    clock = ManualClock(1_700_000_000_000)
    receiver = receiver_factory()
    store, service, worker = setup(tmp_path, sqlite_feed, clock)
    service.create_destination({"name": "crm", "url": receiver.url})
    service.subscribe("crm", "vip")
    valid, recorded = clock.now_ms() - 3_600_000, clock.now_ms()
    sqlite_feed.append(MembershipChange(profile_id="p1", segment="vip", kind="entered",
                                        at_ms=valid, sequence=1, recorded_at_ms=recorded))  # fmt: skip

    async def drive() -> None:
        for _ in range(50):
            await worker.run_pass()
            if store.stats("crm").delivered:
                break
        await worker.aclose()

    asyncio.run(drive())
    [data] = items_of(receiver.ok()[0].body)
    assert (data["valid_at_ms"], data["recorded_at_ms"], data["at_ms"]) == (valid, recorded, valid)
