"""The profile API over a real HTTP server, a real SQLite log and state, and real tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from tests.support.net import free_port

from segflow.api.auth import authorizer
from segflow.api.profiles import profile_routes
from segflow.catalog.tokens import TokenStore
from segflow.clock import DAY_MS, ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.stream import Processor, ProfileReader, SqliteStateStore

T0 = 1_700_000_000_000


def ev(type: str, ts: int, mid: str, **fields: Any) -> Event:
    return Event(
        type=type, message_id=mid, source_id="web", timestamp_ms=ts, received_at_ms=ts, **fields
    )


SEED = [
    ev("page", T0, "m1", anonymous_id="anon_123xyz", name="Shoes"),
    ev(
        "track",
        T0 + 1000,
        "m2",
        anonymous_id="anon_123xyz",
        event="Product Added",
        properties={"sku": "S1"},
    ),
    ev(
        "identify",
        T0 + DAY_MS,
        "m3",
        anonymous_id="anon_123xyz",
        user_id="user_42",
        traits={"email": "ann@example.com", "name": "Ann"},
    ),
    ev(
        "track",
        T0 + 2 * DAY_MS,
        "m4",
        anonymous_id="zendesk-1",
        event="Support Ticket Created",
        context={"traits": {"email": "ANN@example.com"}},
    ),
    ev("identify", T0 + 2 * DAY_MS + 5, "m5", user_id="user_42", traits={"plan": "pro"}),
]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=4)
    log.append(SEED)
    store = SqliteStateStore(tmp_path / "state.sqlite")
    proc = Processor(log, store, clock=ManualClock(T0))
    while proc.run_once() > 0:
        pass
    tokens = TokenStore(tmp_path / "catalog.sqlite")
    tok = {role: tokens.create(role) for role in ("read", "admin")}
    reader = ProfileReader(store.reader(), log)
    app = Starlette(routes=profile_routes(reader, authorizer(tokens), splitter=proc))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # waiting for the server to listen, not for time logic
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", tok
    finally:
        server.should_exit = True
        thread.join(10)
        reader.reader.close()
        store.close()
        tokens.close()
        log.close()


def get(base: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(base + path, headers=headers)


def test_seed_scenario_through_the_api(api: tuple[str, dict[str, str]]) -> None:
    base, tok = api
    r = get(base, "/api/v1/profiles/email:Ann@Example.com", tok["read"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert {(i["type"], i["value"]) for i in body["identities"]} == {
        ("anonymous_id", "anon_123xyz"),
        ("user_id", "user_42"),
        ("email", "ann@example.com"),
        ("anonymous_id", "zendesk-1"),
    }
    assert body["traits"] == {"email": "ann@example.com", "name": "Ann", "plan": "pro"}
    assert body["segments"] == [] and body["first_seen"] == "2023-11-14T22:13:20.000Z"
    for ident in (
        "anonymous_id:anon_123xyz",
        "user_id:user_42",
        "anonymous_id:zendesk-1",
        f"profile_id:{body['id']}",
    ):
        assert get(base, f"/api/v1/profiles/{ident}", tok["read"]).json()["id"] == body["id"]

    events = get(base, "/api/v1/profiles/user_id:user_42/events?limit=3", tok["read"]).json()
    assert [e["message_id"] for e in events["events"]] == ["m5", "m4", "m3"]
    rest = get(
        base, f"/api/v1/profiles/user_id:user_42/events?before={events['next_before']}", tok["read"]
    ).json()
    assert [e["message_id"] for e in rest["events"]] == ["m2", "m1"] and rest["next_before"] is None

    merges = get(base, "/api/v1/profiles/user_id:user_42/merges", tok["read"]).json()
    assert merges["profile_id"] == body["id"]
    segments = get(base, "/api/v1/profiles/user_id:user_42/segments", tok["read"]).json()
    assert segments["segments"] == []


def test_errors_are_json(api: tuple[str, dict[str, str]]) -> None:
    base, tok = api
    r = get(base, "/api/v1/profiles/user_id:nobody", tok["read"])
    assert r.status_code == 404 and r.json()["error"]["details"] == {"identifier": "user_id:nobody"}
    assert get(base, "/api/v1/profiles/shoe_size:42", tok["read"]).status_code == 400
    assert (
        get(base, "/api/v1/profiles/user_id:user_42/events?limit=0", tok["read"]).status_code == 400
    )
    r = get(base, "/api/v1/profiles/user_id:user_42", None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert get(base, "/api/v1/profiles/user_id:user_42", tok["read"] + "x").status_code == 401


def test_split_needs_admin_and_separates_identifiers(api: tuple[str, dict[str, str]]) -> None:
    base, tok = api
    url = base + "/api/v1/profiles/user_id:user_42/split"
    body = {"identifiers": ["anonymous_id:zendesk-1"]}
    r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {tok['read']}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {tok['admin']}"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["kept_events"], result["split_events"]) == (
        5,
        0,
    )  # the ticket's strongest id is the email
    off = get(base, "/api/v1/profiles/anonymous_id:zendesk-1", tok["read"]).json()
    assert off["id"] == result["split_off"] != result["kept"]
    bad = httpx.post(url, content=b"[1]", headers={"Authorization": f"Bearer {tok['admin']}"})
    assert bad.status_code == 400
