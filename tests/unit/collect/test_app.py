"""The collector app in process (httpx's ASGI transport): statuses the SDKs rely on."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from segflow.clock import ManualClock
from segflow.collect.app import CollectorApp
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor
from segflow.log.sqlite import SqliteEventLog


def call(app: CollectorApp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://collector.test"
        ) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def app(ingestor: Ingestor, clock: ManualClock) -> CollectorApp:
    return CollectorApp(ingestor, clock=clock)


@pytest.fixture
def key(catalog: SourceCatalog) -> str:
    return catalog.create("web")[1]


def test_single_and_batch(app: CollectorApp, key: str, log: SqliteEventLog) -> None:
    r = call(app, "POST", "/v1/track", auth=(key, ""), json={"userId": "u", "event": "E"})
    assert (r.status_code, r.json()) == (200, {"success": True})
    r = call(
        app, "POST", "/v1/batch", auth=(key, ""), json={"batch": [{"type": "page", "userId": "u"}]}
    )
    assert r.json()["accepted"] == 1
    assert sum(log.end_offsets().values()) == 2


def test_write_failure_is_503_with_retry_after(
    app: CollectorApp, key: str, log: SqliteEventLog
) -> None:
    pages = log._write.execute("PRAGMA page_count").fetchone()[0]
    log._write.execute(f"PRAGMA max_page_count={pages}")
    batch = [
        {"type": "track", "userId": f"u{i}", "event": "E" * 100, "messageId": f"m{i}"}
        for i in range(2000)
    ]
    r = call(app, "POST", "/v1/batch", auth=(key, ""), json={"batch": batch})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    log._write.execute("PRAGMA max_page_count=1073741823")
    r = call(app, "POST", "/v1/batch", auth=(key, ""), json={"batch": batch})
    assert r.status_code == 200 and r.json()["accepted"] == 2000


def test_backpressure_is_429_with_retry_after(
    tmp_path: Any, catalog: SourceCatalog, key: str, clock: ManualClock
) -> None:
    small = SqliteEventLog(tmp_path / "small.sqlite", max_pending_events=5)
    try:
        app = CollectorApp(Ingestor(small, catalog), clock=clock)
        with small._write_lock:
            small.submit([])  # a group the writer is stuck on
            pending = small.submit([])
            small._pending_events = 5
            r = call(app, "POST", "/v1/track", auth=(key, ""), json={"userId": "u", "event": "E"})
            small._pending_events = 0
        pending.result()
        assert r.status_code == 429 and "retry-after" in r.headers
    finally:
        small.close()


def test_unknown_route_and_method(app: CollectorApp) -> None:
    assert call(app, "GET", "/v1/nope").status_code == 404
    assert call(app, "GET", "/v1/track").status_code == 405


def test_health(app: CollectorApp) -> None:
    assert call(app, "GET", "/health").json()["status"] == "ok"


def test_a_batch_answers_per_message_and_dead_letters_the_exact_bytes_of_refused_ones(
    app: CollectorApp, key: str, log: SqliteEventLog
) -> None:
    good = b'{"type":"track","userId":"u1","event":"E","messageId":"g1"}'
    no_event = b'{"type": "track", "userId": "u2",  "messageId": "bad-1"}'
    bad_type = b'{"type":"track","userId":["x"],"event":"E","messageId":"bad-2"}'
    too_big = b'{"type":"track","userId":"u3","event":"E","messageId":"big","p":"%s"}' % (
        b"x" * (33 * 1024)
    )
    body = b'{"batch":[%s]}' % b", ".join([good, no_event, bad_type, too_big, good])
    r = call(app, "POST", "/v1/batch", auth=(key, ""), content=body)
    assert r.status_code == 200
    answer = r.json()
    assert (answer["success"], answer["accepted"], answer["duplicates"]) == (True, 2, 1)
    assert [(x["index"], x["messageId"], x["field"]) for x in answer["refused"]] == [
        (1, "bad-1", "event"),
        (2, "bad-2", "userId"),
        (3, "big", "max_message_bytes"),
    ]
    assert answer["refused"][0]["reason"] == "required for track calls"
    letters = {d.message_id: d for d in log.dead_letters()}
    assert letters["bad-1"].payload == no_event  # the message's own bytes, spacing and all
    assert letters["bad-2"].payload == bad_type
    assert letters["big"].payload == too_big
    assert sum(log.end_offsets().values()) == 1


def test_a_batch_of_only_refused_messages_is_a_400_naming_each(
    app: CollectorApp, key: str, log: SqliteEventLog
) -> None:
    body = {"batch": [{"type": "alias", "userId": "u", "messageId": "a1"}, {"type": "nope"}]}
    r = call(app, "POST", "/v1/batch", auth=(key, ""), json=body)
    assert r.status_code == 400
    assert [(x["index"], x["field"]) for x in r.json()["refused"]] == [
        (0, "previousId"),
        (1, "type"),
    ]
    assert len(log.dead_letters()) == 2 and sum(log.end_offsets().values()) == 0
