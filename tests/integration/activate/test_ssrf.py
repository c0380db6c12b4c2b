"""The SSRF guard at delivery time, through the real connection pool and real sockets on loopback.

A test resolver stands in for DNS (no /etc/hosts edits): ``rebind.test`` answers what the
test says. 127.0.0.2 is allow-listed; 127.0.0.1 (loopback) is not. Two receivers listen on
the same port, one on each address, so a request reaching the wrong one is visible.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segflow.activate.payloads import DictProfiles
from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore
from segflow.activate.worker import DeliveryWorker
from segflow.spec import MembershipChange


class Dns:
    """Answers for ``rebind.test``: the next queued answer, then the last one forever."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, host: str) -> list[str]:
        assert host == "rebind.test", host
        self.calls += 1
        return [self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]]


def pair(receiver_factory: Callable[..., Any]) -> tuple[Any, Any]:
    """Receivers on 127.0.0.2:P (allowed) and 127.0.0.1:P (refused)."""
    for _ in range(20):
        allowed = receiver_factory(host="127.0.0.2")
        try:
            return allowed, receiver_factory(host="127.0.0.1", port=allowed.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


def worker_for(tmp_path: Path, dns: Dns) -> tuple[ActivationService, DeliveryWorker]:
    guard = UrlGuard(["127.0.0.2/32"], resolver=dns)
    store = DeliveryStore(tmp_path / "delivery.sqlite")
    lookup = DictProfiles()
    feed = Feed()
    service = ActivationService(store, guard=guard, lookup=lookup)
    return service, DeliveryWorker(store, feed, lookup, guard=guard)


class Feed:
    def __init__(self) -> None:
        self.items: list[MembershipChange] = []

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, Any]]:
        return [(i + 1, c) for i, c in enumerate(self.items)][after_seq : after_seq + limit]


def deliver(worker: DeliveryWorker, pid: str) -> None:
    assert isinstance(worker.feed, Feed)
    worker.feed.items.append(
        MembershipChange(profile_id=pid, segment="vip", kind="entered", at_ms=1, sequence=1)
    )

    async def go() -> None:
        await worker.run_pass()
        await worker.aclose()

    asyncio.run(go())


def test_the_connection_goes_to_the_address_that_was_checked(
    tmp_path: Path, receiver_factory: Any
) -> None:
    allowed, refused = pair(receiver_factory)
    # creation checks once; the delivery's connection resolves once; any later lookup
    # would answer the refused address
    dns = Dns("127.0.0.2", "127.0.0.2", "127.0.0.1")
    service, worker = worker_for(tmp_path, dns)
    service.create_destination({"name": "d", "url": f"http://rebind.test:{allowed.port}/hook"})
    service.subscribe("d", "vip")
    deliver(worker, "p1")
    assert service.store.stats("d").delivered == 1
    assert [r.headers["host"] for r in allowed.requests] == [f"rebind.test:{allowed.port}"]
    assert refused.requests == [] and dns.calls == 2


def test_a_name_that_now_resolves_to_a_refused_address_is_not_connected(
    tmp_path: Path, receiver_factory: Any
) -> None:
    allowed, refused = pair(receiver_factory)
    dns = Dns("127.0.0.2", "127.0.0.1")  # checked at creation, rebound before the delivery
    service, worker = worker_for(tmp_path, dns)
    service.create_destination({"name": "d", "url": f"http://rebind.test:{allowed.port}/hook"})
    service.subscribe("d", "vip")
    deliver(worker, "p1")
    [row] = service.deliveries("d")
    assert row["delivery"].status == "pending"  # retried later: DNS may change back
    assert "127.0.0.1 (loopback)" in (row["delivery"].last_error or "")
    assert allowed.requests == [] and refused.requests == []


def test_metadata_address_is_refused_at_delivery_time(tmp_path: Path) -> None:
    dns = Dns("127.0.0.2", "169.254.169.254")
    service, worker = worker_for(tmp_path, dns)
    service.create_destination({"name": "d", "url": "http://rebind.test:9/hook"})
    service.subscribe("d", "vip")
    deliver(worker, "p1")
    error = service.deliveries("d")[0]["delivery"].last_error or ""
    assert "169.254.169.254" in error and "metadata" in error


def test_test_send_uses_the_guarded_pool(tmp_path: Path, receiver_factory: Any) -> None:
    allowed, refused = pair(receiver_factory)
    dns = Dns("127.0.0.2", "127.0.0.1")
    service, _ = worker_for(tmp_path, dns)
    service.create_destination({"name": "d", "url": f"http://rebind.test:{allowed.port}/hook"})
    result = asyncio.run(service.test_send("d"))
    assert result["ok"] is False and "loopback" in result["error"]
    assert allowed.requests == [] and refused.requests == []
