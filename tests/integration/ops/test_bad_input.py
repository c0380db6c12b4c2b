"""Bad input to a real ``segflow serve`` is a 4xx with a reason, never a 500 or unbounded
memory (issue #17): deeply nested rules and JSON, out-of-range timestamps, oversized bodies."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.serve import Serve, make_source, make_token

from segflow.rules.parser import MAX_DEPTH

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, str]]:
    data: Path = tmp_path_factory.mktemp("bad-input") / "data"
    key = make_source(data, "web")
    admin = make_token(data, "admin")
    server = Serve(data, env={"SEGFLOW_API__MAX_BODY_BYTES": str(LIMIT)}, source=None, role=None)
    try:
        yield server, key, admin
    finally:
        server.stop()


@pytest.fixture
def api(served: tuple[Any, str, str]) -> Iterator[httpx.Client]:
    server, _, admin = served
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


DEEP_RULES = {
    "parentheses": "(" * 500 + 'did "A"' + ")" * 500,
    "not": "not " * 500 + 'did "A"',
    "filter parentheses": 'did "A" where ' + "(" * 500 + "x = 1" + ")" * 500,
    "filter not": 'did "A" where ' + "not " * 500 + "x = 1",
}
ROUTES = {
    "create": ("/api/v1/segments", lambda rule: {"name": "deep", "rule": rule}),
    "check": ("/api/v1/segments/check", lambda rule: {"rule": rule}),
    "preview": ("/api/v1/segments/preview", lambda rule: {"rule": rule}),
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("shape", list(DEEP_RULES))
def test_a_rule_nested_past_the_depth_limit_is_a_400_naming_the_limit(
    api: httpx.Client, route: str, shape: str
) -> None:
    path, body = ROUTES[route]
    answer = api.post(path, json=body(DEEP_RULES[shape]))
    if route == "check":  # check answers every rule: ok or its diagnostics
        assert answer.status_code == 200 and answer.json()["ok"] is False, answer.text
        (diagnostic,) = answer.json()["diagnostics"]
    else:
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "rule_syntax_error"
        (diagnostic,) = error["details"]["errors"]
    assert f"more than {MAX_DEPTH} levels deep" in diagnostic["message"]
    assert diagnostic["line"] == 1 and diagnostic["column"] > MAX_DEPTH


def test_a_rule_at_the_depth_limit_is_accepted(api: httpx.Client) -> None:
    rule = "(" * (MAX_DEPTH - 1) + 'not did "A"' + ")" * (MAX_DEPTH - 1)
    for path, body in ROUTES.values():
        answer = api.post(path, json=body(rule))
        assert answer.status_code in (200, 201), (path, answer.text)
        assert answer.json().get("ok", True), answer.text


def test_a_deeply_nested_json_body_is_a_400_naming_the_body(api: httpx.Client) -> None:
    for path in ("/api/v1/segments", "/api/v1/segments/check", "/api/v1/destinations"):
        answer = api.post(path, content=b"[" * 10_000 + b"]" * 10_000)
        assert answer.status_code == 400, answer.text
        details = answer.json()["error"]["details"]
        assert details["field"] == "body" and "nested" in details["reason"]


@pytest.mark.parametrize(
    ("times", "field"),
    [
        ({"timestamp": "0001-01-01T00:00:00+14:00"}, "timestamp"),
        ({"timestamp": "9999-12-31T23:59:59-14:00"}, "timestamp"),
        ({"originalTimestamp": "0001-01-01T00:00:00+14:00"}, "originalTimestamp"),
        ({"sentAt": "0001-01-01T00:00:00+14:00"}, "sentAt"),
        ({"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"}, "timestamp"),
    ],
)  # fmt: skip
def test_a_time_no_reader_can_render_is_refused_naming_the_field(
    served: tuple[Any, str, str], api: httpx.Client, times: dict[str, str], field: str
) -> None:
    server, key, _ = served
    event = {"userId": "time-traveller", "event": "E", **times}
    answer = httpx.post(f"{server.url}/v1/track", json=event, auth=(key, ""), timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field, answer.text
    assert api.get("/api/v1/profiles/user_id:time-traveller").status_code == 404


def test_a_declared_body_over_the_limit_is_a_413_before_it_is_read(
    served: tuple[Any, str, str], api: httpx.Client
) -> None:
    server, _, admin = served
    # a declared gigabyte, none of it sent: the answer comes without reading the body
    head = (
        "POST /api/v1/segments/check HTTP/1.1\r\nHost: segflow\r\n"
        f"Authorization: Bearer {admin}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(head.encode())
        reply = ""
        while '"allowed"' not in reply:  # the head and the body may come in two packets
            chunk = conn.recv(65536).decode()
            if not chunk:
                break
            reply += chunk
    assert reply.startswith("HTTP/1.1 413"), reply
    assert '"limit":"api.max_body_bytes"' in reply and f'"allowed":{LIMIT}' in reply
    # just over the limit, with its length declared
    answer = api.post("/api/v1/segments/check", content=b" " * (LIMIT + 1))
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_over_the_limit_is_a_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"rule": "'
        for _ in range(LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    answer = api.post("/api/v1/segments/check", content=chunks())
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["details"]["limit"] == "api.max_body_bytes"
    metrics = api.get("/metrics").text
    assert 'segflow_http_requests_refused_total{app="admin",reason="payload_too_large"}' in metrics
    assert api.post("/api/v1/segments/check", json={"rule": 'did "A"'}).status_code == 200


def test_the_console_bounds_its_bodies_too(served: tuple[Any, str, str]) -> None:
    server, _, _ = served
    with httpx.Client(base_url=server.url, timeout=30) as client:
        over = client.post("/console/login", content=b"token=" + b"x" * LIMIT)
        assert over.status_code == 413, over.text
        deep = client.post(
            "/console/login",
            content=b"[" * 10_000 + b"]" * 10_000,
            headers={"content-type": "application/json"},
        )
        assert deep.status_code < 500, deep.text
