"""Order and idempotency across replays, batches and consent (manual clock, mock request pool)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict
from pathlib import Path

import httpx
import msgspec
from standardwebhooks import Webhook
from tests.unit.activate.harness import Harness, consent, mc, ok

from segflow.activate.payloads import DictProfiles


def kinds(h: Harness) -> list[tuple[str, str, str]]:
    """(profile, segment, kind) of every successful request, in order."""
    return [
        (b["data"]["profile_id"], b["data"]["segment"], b["data"]["kind"]) for b in h.ok_bodies()
    ]


def test_replay_does_not_rewind_a_later_delivered_change(tmp_path: Path) -> None:
    answers = iter([400, 200])
    h = Harness(tmp_path, lambda r: httpx.Response(next(answers, 200)))
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1), mc("p1", "exited", 2))
    h.passes(2)
    assert h.store.stats("d").dead == 1 and kinds(h) == [("p1", "vip", "exited")]
    assert h.service.replay("d") == {"replayed": 0, "superseded": 1}
    h.passes(2)
    assert kinds(h) == [("p1", "vip", "exited")]  # "entered" after "exited" would be a lie
    [skipped] = h.service.deliveries("d", status="skipped")
    assert "superseded" in (skipped["delivery"].last_error or "")


def test_replayed_change_goes_ahead_of_later_pending_ones(tmp_path: Path) -> None:
    answers = iter([400, 503])
    h = Harness(tmp_path, lambda r: httpx.Response(next(answers, 200)))
    h.service.create_destination(
        {"name": "d", "url": "https://hooks.example/x", "backoff_base_ms": 1_000}
    )
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1), mc("p1", "exited", 2))
    h.passes(2)  # entered: 400 (dead); exited: 503 (retrying)
    assert h.service.replay("d") == {"replayed": 1, "superseded": 0}
    h.passes(4, advance_ms=2_000)
    assert kinds(h) == [("p1", "vip", "entered"), ("p1", "vip", "exited")]
    assert h.store.stats("d").delivered == 2


def test_replay_racing_a_later_change_in_flight_is_superseded(tmp_path: Path) -> None:
    h: Harness

    def answer(request: httpx.Request) -> httpx.Response:
        kind = msgspec.json.decode(request.content)["data"]["kind"]
        if kind == "entered" and not h.requests[:-1]:
            return httpx.Response(400)
        if kind == "exited":  # the operator replays while this request is in flight
            assert h.service.replay("d") == {"replayed": 1, "superseded": 0}
        return httpx.Response(200)

    h = Harness(tmp_path, answer)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1), mc("p1", "exited", 2))
    h.passes(3)
    assert kinds(h) == [("p1", "vip", "exited")]
    stats = h.store.stats("d")
    assert (stats.delivered, stats.skipped, stats.pending) == (1, 1, 0)


def test_batch_keeps_its_members_and_id_across_retries(tmp_path: Path) -> None:
    answers = iter([500, 500])
    h = Harness(tmp_path, lambda r: httpx.Response(next(answers, 200)))
    h.worker.rng = random.Random(7)  # different jitter per draw
    _, secret = h.service.create_destination(
        {"name": "d", "url": "https://hooks.example/x", "batch_max": 3, "backoff_base_ms": 1_000}
    )
    h.service.subscribe("d", "vip")
    h.feed.add(*(mc(f"p{i}", "entered", 1) for i in range(3)))
    h.passes(1)
    h.feed.add(*(mc(f"p{i}", "entered", 1) for i in range(3, 6)))
    h.passes(40, advance_ms=150)
    assert h.store.stats("d").delivered == 6
    hook = Webhook(secret)
    members: dict[str, set[frozenset[str]]] = defaultdict(set)
    ids_of: dict[str, set[str]] = defaultdict(set)
    for request in h.requests:
        body = hook.verify(request.content, dict(request.headers))  # a fresh, valid signature
        items = frozenset(item["data"]["id"] for item in body["data"])
        members[request.headers["webhook-id"]].add(items)
        for item in items:
            ids_of[item].add(request.headers["webhook-id"])
    assert all(len(sets) == 1 for sets in members.values())  # one id, one set of changes
    assert all(len(ids) == 1 for ids in ids_of.values())  # a change travels under one id
    assert len(h.requests) > len(members)  # there were retries


def test_batch_members_wait_for_a_replayed_older_change(tmp_path: Path) -> None:
    answers = iter([400, 500])
    h = Harness(tmp_path, lambda r: httpx.Response(next(answers, 200)))
    h.service.create_destination(
        {"name": "d", "url": "https://hooks.example/x", "batch_max": 2, "backoff_base_ms": 1_000}
    )
    h.service.subscribe("d", "vip")
    h.service.subscribe("d", "other")
    h.feed.add(mc("p1", "entered", 1), mc("p2", "entered", 1))
    h.passes(1)  # batch [p1, p2] rejected: both dead
    h.feed.add(mc("p1", "entered", 2, "other"), mc("p3", "entered", 1))
    h.passes(1)  # batch [p1 other, p3]: 500, retrying
    assert h.service.replay("d")["replayed"] == 2
    h.passes(10, advance_ms=1_000)
    delivered = [(p, s) for p, s, _ in kinds_in_batches(h)]
    assert delivered.index(("p1", "vip")) < delivered.index(("p1", "other"))
    assert h.store.stats("d").delivered == 4


def kinds_in_batches(h: Harness) -> list[tuple[str, str, str]]:
    out = []
    for body in h.ok_bodies():
        for item in body["data"] if body["type"] == "batch" else [body]:
            out.append((item["data"]["profile_id"], item["data"]["segment"], item["data"]["kind"]))
    return out


def consent_harness(tmp_path: Path) -> tuple[Harness, DictProfiles]:
    lookup = DictProfiles(members={"vip": ["p1"]})
    h = Harness(tmp_path, ok, lookup)
    h.service.create_destination(
        {"name": "ads", "url": "https://ads.example/x", "consent_purpose": "advertising"}
    )
    h.service.create_destination({"name": "crm", "url": "https://crm.example/x"})
    for name in ("ads", "crm"):
        h.service.subscribe(name, "vip")
    return h, lookup


def sent_to(h: Harness, host: str) -> list[tuple[str, str]]:
    return [
        (b["data"]["kind"], b["data"]["segment"])
        for r, b in zip(h.requests, h.bodies(), strict=True)
        if r.url.host == host
    ]


def test_consent_withdrawn_without_a_membership_change_sends_exited(tmp_path: Path) -> None:
    h, _ = consent_harness(tmp_path)
    h.feed.add(mc("p1", "entered", 1))
    h.passes(1)
    h.feed.add(consent("p1", {"advertising": False}, 2))
    h.passes(1)
    assert sent_to(h, "ads.example") == [("entered", "vip"), ("exited", "vip")]
    assert sent_to(h, "crm.example") == [("entered", "vip")]  # no consent purpose: unaffected
    h.feed.add(consent("p1", {"advertising": True}, 3))  # granted again while still in vip
    h.passes(1)
    assert sent_to(h, "ads.example")[-1] == ("entered", "vip")
    assert len(sent_to(h, "crm.example")) == 1


def test_consent_is_read_at_the_feed_position_not_from_current_traits(tmp_path: Path) -> None:
    h, lookup = consent_harness(tmp_path)
    lookup.trait_map["p1"] = {"consent": {"advertising": True}}  # the profile's state now
    h.feed.add(
        mc("p1", "entered", 1),
        consent("p1", {"advertising": False}, 2),
        mc("p1", "exited", 3),
        mc("p1", "entered", 4),
        consent("p1", {"advertising": True}, 5),
    )
    h.passes(3)
    # entered; withdrawn -> exited; changes while denied are not sent; granted -> entered
    assert sent_to(h, "ads.example") == [("entered", "vip"), ("exited", "vip"), ("entered", "vip")]
    assert sent_to(h, "crm.example") == [("entered", "vip"), ("exited", "vip"), ("entered", "vip")]


def test_a_denied_profile_entering_is_not_sent_until_consent_is_granted(tmp_path: Path) -> None:
    h, _ = consent_harness(tmp_path)
    h.feed.add(consent("p1", {"categoryPreferences": {"Advertising": False}}, 1))
    h.feed.add(mc("p1", "entered", 2))
    h.passes(1)
    assert sent_to(h, "ads.example") == []
    h.feed.add(consent("p1", {"categoryPreferences": {"Advertising": True}}, 3))
    h.passes(1)
    assert sent_to(h, "ads.example") == [("entered", "vip")]


def test_concurrency_caps_requests_in_flight(tmp_path: Path) -> None:
    both = threading.Barrier(2, timeout=10)

    def answer(request: httpx.Request) -> httpx.Response:
        both.wait()  # returns only when two requests are in flight at once
        return httpx.Response(200)

    h = Harness(tmp_path, answer)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x", "concurrency": 2})
    h.service.subscribe("d", "vip")
    h.feed.add(*(mc(f"p{i}", "entered", 1) for i in range(6)))
    assert [h.pass_attempts() for _ in range(4)] == [2, 2, 2, 0]
    assert h.store.stats("d").delivered == 6


def test_concurrency_and_rate_changes_apply_without_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    h.service.create_destination(
        {"name": "d", "url": "https://hooks.example/x", "concurrency": 2, "rate_limit_per_s": 1000}
    )
    h.service.subscribe("d", "vip")
    h.feed.add(*(mc(f"p{i}", "entered", 1) for i in range(10)))
    rates: list[float | None] = []

    async def go() -> list[int]:
        runner, started = h.worker._runner("d"), []
        h.worker.feeder.pump(h.feed)
        for change in ({}, {"concurrency": 5, "rate_limit_per_s": 500}, {"rate_limit_per_s": None}):
            h.service.update_destination("d", change)
            tasks = await runner.dispatch()
            rates.append(runner.bucket.rate if runner.bucket else None)
            started.append(len(tasks))
            await asyncio.gather(*tasks)
        await h.worker.aclose()
        return started

    assert asyncio.run(go()) == [2, 5, 3]
    assert rates == [1000, 500, None]
