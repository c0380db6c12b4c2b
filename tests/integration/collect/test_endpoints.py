"""Every endpoint, both auth styles, gzip, limits, partial batches, CORS, SDK settings."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.cli import run
from tests.support.serve import make_source, read_events

SINGLE = {
    "track": {"event": "Product Viewed"},
    "identify": {"traits": {"plan": "pro"}},
    "page": {"name": "Home"},
    "screen": {"name": "Feed"},
    "group": {"groupId": "g1"},
    "alias": {"previousId": "anon-1"},
}
SHORT = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}


def mid() -> str:
    return f"it-{uuid.uuid4()}"


def stored(data_dir: Path) -> dict[str, Any]:
    return {e.message_id: e for e in read_events(data_dir)}


@pytest.mark.parametrize("call", list(SINGLE))
@pytest.mark.parametrize("prefix", ["/v1", ""])
def test_single_endpoints(
    call: str, prefix: str, client: httpx.Client, write_key: str, data_dir: Path
) -> None:
    message_id = mid()
    r = client.post(
        f"{prefix}/{call}",
        auth=(write_key, ""),
        json={"userId": "u1", "messageId": message_id, **SINGLE[call]},
    )
    assert (r.status_code, r.json()) == (200, {"success": True})
    event = stored(data_dir)[message_id]
    assert event.type == call and event.user_id == "u1" and event.context["ip"] == "127.0.0.1"


@pytest.mark.parametrize("short", list(SHORT))
def test_analytics_js_routes_with_text_plain_and_body_key(
    short: str, client: httpx.Client, write_key: str, data_dir: Path
) -> None:
    """analytics-next posts to /v1/{t,i,p,s,g,a} with text/plain and writeKey in the body."""
    call = SHORT[short]
    message_id = mid()
    body = {
        "writeKey": write_key,
        "type": call,
        "anonymousId": "a1",
        "userId": "u1",
        "messageId": message_id,
        "sentAt": "2024-01-01T00:00:01.000Z",
        "timestamp": "2024-01-01T00:00:00.000Z",
        **SINGLE[call],
    }
    r = client.post(
        f"/v1/{short}", content=json.dumps(body), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 200
    event = stored(data_dir)[message_id]
    assert event.type == call and event.received_at_ms - event.timestamp_ms == 1000


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/b", "/b", "/import"])
def test_batch_endpoints(path: str, client: httpx.Client, write_key: str, data_dir: Path) -> None:
    ids = [mid() for _ in range(3)]
    batch = [{"type": "track", "event": "E", "anonymousId": "a", "messageId": i} for i in ids]
    r = client.post(path, auth=(write_key, ""), json={"batch": batch})
    assert r.status_code == 200 and r.json()["accepted"] == 3
    assert set(ids) <= set(stored(data_dir))


def test_basic_auth_without_colon(client: httpx.Client, write_key: str) -> None:
    token = base64.b64encode(write_key.encode()).decode()
    r = client.post(
        "/v1/track", headers={"authorization": f"Basic {token}"}, json={"userId": "u", "event": "E"}
    )
    assert r.status_code == 200


def test_body_write_key_beside_a_bearer_token(client: httpx.Client, write_key: str) -> None:
    r = client.post(
        "/v1/batch",
        headers={"authorization": "Bearer some-token"},
        json={"writeKey": write_key, "batch": [{"type": "identify", "userId": "u"}]},
    )
    assert r.status_code == 200


@pytest.mark.parametrize("auth", [None, ("wrong", ""), ("", "")])
def test_bad_or_missing_key_is_401_and_nothing_stored(
    auth: tuple[str, str] | None, client: httpx.Client, data_dir: Path
) -> None:
    message_id = mid()
    r = client.post(
        "/v1/track", auth=auth, json={"userId": "u", "event": "E", "messageId": message_id}
    )
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert message_id not in stored(data_dir)


def test_gzip_batch(client: httpx.Client, write_key: str, data_dir: Path) -> None:
    ids = [mid() for _ in range(50)]
    body = gzip.compress(
        json.dumps(
            {"batch": [{"type": "screen", "userId": "m", "name": "S", "messageId": i} for i in ids]}
        ).encode()
    )
    r = client.post(
        "/v1/b",
        auth=(write_key, ""),
        content=body,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 50
    assert set(ids) <= set(stored(data_dir))


def test_gzip_bomb_is_413(client: httpx.Client, write_key: str) -> None:
    bomb = gzip.compress(b" " * 100_000_000)
    r = client.post(
        "/v1/batch", auth=(write_key, ""), content=bomb, headers={"content-encoding": "gzip"}
    )
    assert r.status_code == 413 and r.json()["details"]["limit"] == "max_batch_bytes"


def test_declared_length_over_limit_refused_before_body(server: Any, write_key: str) -> None:
    """Only headers are sent: the answer comes without the body being read."""
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    request = (
        f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request.encode())
        head = ""
        while "max_batch_bytes" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk.decode("latin-1")
    assert head.startswith("HTTP/1.1 413") and "max_batch_bytes" in head


def test_message_over_32kb_is_refused(client: httpx.Client, write_key: str) -> None:
    big = {"userId": "u", "event": "E", "properties": {"blob": "x" * 40_000}}
    r = client.post("/v1/track", auth=(write_key, ""), json=big)
    assert r.status_code == 413 and r.json()["details"]["limit"] == "max_message_bytes"
    r = client.post(
        "/v1/batch",
        auth=(write_key, ""),
        json={"batch": [{"type": "track", **big}, {"type": "identify", "userId": "u"}]},
    )
    assert r.status_code == 200
    assert [(x["index"], x["field"]) for x in r.json()["refused"]] == [(0, "max_message_bytes")]


def test_too_many_messages_in_a_batch(client: httpx.Client, write_key: str) -> None:
    r = client.post(
        "/v1/batch",
        auth=(write_key, ""),
        json={"batch": [{"type": "identify", "userId": "u"}] * 2501},
    )
    assert r.status_code == 413 and r.json()["details"]["limit"] == "max_batch_messages"


def test_message_id_over_100_chars(client: httpx.Client, write_key: str) -> None:
    r = client.post(
        "/v1/track",
        auth=(write_key, ""),
        json={"userId": "u", "event": "E", "messageId": "m" * 101},
    )
    assert r.status_code == 400 and r.json()["field"] == "messageId"


def test_partial_batch_keeps_the_good_ones(
    client: httpx.Client, write_key: str, data_dir: Path
) -> None:
    good, bad = mid(), mid()
    batch = [
        {"type": "track", "userId": "u", "event": "E", "messageId": good},
        {"type": "track", "userId": "u", "messageId": bad},
        {"type": "alias", "userId": "u", "messageId": "no-previous"},
    ]
    r = client.post("/v1/batch", auth=(write_key, ""), json={"batch": batch})
    body = r.json()
    assert r.status_code == 200 and body["accepted"] == 1
    assert [(x["index"], x["messageId"], x["field"]) for x in body["refused"]] == [
        (1, bad, "event"),
        (2, "no-previous", "previousId"),
    ]
    assert good in stored(data_dir) and bad not in stored(data_dir)
    letters = json.loads(
        run("dead-letters", "list", "--json", "--data-dir", str(data_dir), check=True).stdout
    )
    assert {bad, "no-previous"} <= {x["message_id"] for x in letters}


def test_all_refused_batch_is_400(client: httpx.Client, write_key: str) -> None:
    r = client.post(
        "/v1/batch", auth=(write_key, ""), json={"batch": [{"type": "track", "userId": "u"}]}
    )
    assert r.status_code == 400 and r.json()["refused"][0]["field"] == "event"


def test_retried_batch_is_stored_once(client: httpx.Client, write_key: str, data_dir: Path) -> None:
    ids = [mid() for _ in range(5)]
    body = {"batch": [{"type": "identify", "userId": "r", "messageId": i} for i in ids]}
    first = client.post("/v1/batch", auth=(write_key, ""), json=body).json()
    second = client.post("/v1/batch", auth=(write_key, ""), json=body).json()
    assert (first["duplicates"], second["duplicates"]) == (0, 5)
    assert sum(1 for e in read_events(data_dir) if e.message_id in ids) == 5


def test_cors_preflight_and_headers(client: httpx.Client, write_key: str) -> None:
    r = client.options(
        "/v1/t",
        headers={
            "origin": "https://shop.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    r = client.post(
        "/v1/t",
        headers={"origin": "https://shop.example"},
        content=json.dumps({"writeKey": write_key, "userId": "u", "event": "E"}),
    )
    assert r.headers["access-control-allow-origin"] == "https://shop.example"


def test_segment_sdk_settings(client: httpx.Client, server: Any, write_key: str) -> None:
    r = client.get(f"/v1/projects/{write_key}/settings")
    segment = r.json()["integrations"]["Segment.io"]
    assert segment["apiHost"] == f"127.0.0.1:{server.port}/v1" and segment["protocol"] == "http"
    assert client.get("/v1/projects/wrong/settings").status_code == 404


def test_rudderstack_source_config(client: httpx.Client, write_key: str) -> None:
    r = client.get("/sourceConfig", auth=(write_key, ""), params={"v": "3"})
    assert r.status_code == 200 and r.json()["source"]["enabled"] is True
    assert client.get("/sourceConfig").status_code == 401


@pytest.mark.parametrize("mode", ["allow", "flag", "block"])
def test_tracking_plan_modes(mode: str, server: Any, data_dir: Path) -> None:
    plan = {
        "mode": mode,
        "events": {
            "Order Completed": {"properties": {"revenue": {"type": "number", "required": True}}}
        },
    }
    key = make_source(
        data_dir,
        f"plan-{mode}",
        {"tracking_plan": plan, "event_names": {"Order Completed": ["order_done"]}},
    )
    good, bad = mid(), mid()
    batch = [
        {
            "type": "track",
            "userId": "u",
            "event": "order_done",
            "properties": {"revenue": 5},
            "messageId": good,
        },
        {
            "type": "track",
            "userId": "u",
            "event": "Order Completed",
            "properties": {"revenue": "5"},
            "messageId": bad,
        },
    ]
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/v1/batch", auth=(key, ""), json={"batch": batch})
        single = c.post(
            "/v1/track",
            auth=(key, ""),
            json={"userId": "u", "event": "Order Completed", "properties": {}},
        )
    events = stored(data_dir)
    assert events[good].event == "Order Completed"
    if mode == "block":
        assert r.json()["refused"][0]["messageId"] == bad and bad not in events
        assert single.status_code == 400, single.text
        assert single.json()["field"] == "properties.revenue"
        assert single.json()["reason"] == "required"
    else:
        assert single.status_code == 200 and not r.json()["refused"]
        assert events[bad].violations == (
            ("properties.revenue: expected number, got string",) if mode == "flag" else ()
        )
    counts = json.loads(
        run(
            "sources",
            "violations",
            f"plan-{mode}",
            "--json",
            "--data-dir",
            str(data_dir),
            check=True,
        ).stdout
    )
    assert {(c["event"], c["violation"]): c["count"] for c in counts} == {
        ("Order Completed", "properties.revenue: expected number, got string"): 1,
        ("Order Completed", "properties.revenue: required"): 1,
    }


def test_sources_list(data_dir: Path, server: Any) -> None:
    names = [
        s["name"]
        for s in json.loads(
            run("sources", "list", "--json", "--data-dir", str(data_dir), check=True).stdout
        )
    ]
    assert "web" in names


def test_rudderstack_beacon_with_query_key(
    client: httpx.Client, write_key: str, data_dir: Path
) -> None:
    message_id = mid()
    r = client.post(
        "/beacon/v1/batch",
        params={"writeKey": write_key},
        content=json.dumps(
            {
                "batch": [
                    {"type": "page", "anonymousId": "a", "name": "Home", "messageId": message_id}
                ]
            }
        ),
    )
    assert r.status_code == 200 and message_id in stored(data_dir)
