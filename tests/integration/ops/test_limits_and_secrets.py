"""Rate limits per source and per API token, and what the application log never holds:
personal data sent in events, write keys, API tokens, webhook secrets."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.support.net import free_port
from tests.support.serve import make_source, make_token
from tests.support.wait import until


def test_sources_and_tokens_are_rate_limited_separately(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    web = make_source(data, "web")
    ios = make_source(data, "ios")
    one = make_token(data, "read")
    two = make_token(data, "read")
    env = {
        # refills are slow enough that the test's own pace never earns a token back
        "SEGFLOW_COLLECT__RATE_LIMIT_EVENTS_PER_S": "0.01",
        "SEGFLOW_COLLECT__RATE_LIMIT_BURST": "10",
        "SEGFLOW_API__RATE_LIMIT_PER_S": "0.01",
        "SEGFLOW_API__RATE_LIMIT_BURST": "3",
    }
    server = serve_factory(data=data, env=env, source=None, role=None)

    def batch(key: str, n: int, tag: str) -> httpx.Response:
        events = [{"type": "track", "userId": "u", "event": "E", "messageId": f"{tag}{i}"} for i in range(n)]  # fmt: skip
        return httpx.post(f"{server.url}/v1/batch", json={"batch": events}, auth=(key, ""))

    assert batch(web, 8, "a").status_code == 200
    refused = batch(web, 8, "b")
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert batch(ios, 8, "c").status_code == 200  # another source has its own bucket
    assert batch(web, 2, "d").status_code == 200  # what is left of web's burst

    def status(token: str) -> httpx.Response:
        return httpx.get(
            f"{server.url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}
        )

    assert [status(one).status_code for _ in range(3)] == [200, 200, 200]
    limited = status(one)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert status(two).status_code == 200  # another token has its own bucket
    # a bad token is not limited (it gets 401), and cannot drain a real token's bucket
    fake = "sft_" + one.split("_")[1] + "_forged"
    assert [status(fake).status_code for _ in range(5)] == [401] * 5
    assert status(two).status_code == 200

    con = sqlite3.connect(f"file:{data / 'log.sqlite'}?mode=ro", uri=True)
    stored = con.execute("SELECT count(*) FROM records").fetchone()[0]
    con.close()
    assert stored == 8 + 8 + 2  # the refused batch was not stored


CANARIES = ("canary.alpha@leak-test.example", "canary-beta@leak-test.example")


def test_no_personal_data_or_secret_reaches_the_application_log(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    key = make_source(data, "web")
    token = make_token(data, "admin")
    # debug: the most verbose the log gets; a webhook to a closed port logs delivery failures
    server = serve_factory(
        "--log-level",
        "debug",
        data=data,
        env={"SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]'},
        source=None,
        role=None,
    )
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    secrets_seen = [key, token]
    made = api.post(
        "/api/v1/destinations",
        json={
            "name": "crm",
            "url": f"http://127.0.0.1:{free_port()}/hook",
            "subscriptions": [{"segment": "all", "traits": ["email"]}],
        },
    )
    assert made.status_code == 201, made.text
    secrets_seen.append(made.json()["secret"])
    assert api.post("/api/v1/segments", json={"name": "all", "rule": 'did "Signed Up"'}).status_code == 201  # fmt: skip
    collector = httpx.Client(base_url=server.url, auth=(key, ""))
    alpha, beta = CANARIES
    good = [
        {"type": "identify", "userId": "c1", "traits": {"email": alpha, "name": alpha}},
        {"type": "track", "userId": "c1", "event": "Signed Up", "properties": {"contact": beta}},
        {
            "type": "track",
            "userId": "c1",
            "event": "Signed Up",
            "context": {"traits": {"email": beta}},
        },
    ]
    assert collector.post("/v1/batch", json={"batch": good}).status_code == 200
    # refused and malformed input carrying the canaries
    collector.post("/v1/track", json={"userId": alpha, "properties": {"email": beta}})
    collector.post("/v1/batch", content=b'{"batch": [' + alpha.encode() + b"]")
    collector.post("/v1/batch", json={"batch": [{"type": "track", "userId": ["x"], "event": alpha}]})  # fmt: skip
    collector.post(
        "/v1/batch",
        content=gzip.compress(b"{")[:-4] + alpha.encode(),
        headers={"content-encoding": "gzip"},
    )
    httpx.post(f"{server.url}/v1/track", json={"writeKey": alpha, "userId": "x", "event": "E"})
    httpx.get(f"{server.url}/v1/projects/{key}/settings")
    httpx.get(f"{server.url}/v1/sourceConfig", params={"writeKey": key})
    api.get(f"/api/v1/profiles/email:{alpha}")
    api.get(f"/api/v1/profiles/email:{beta}/events")
    api.post("/api/v1/segments/preview", json={"rule": f'trait email = "{alpha}"'})
    httpx.get(f"{server.url}/api/v1/status", headers={"Authorization": f"Bearer {token}x"})

    def attempted() -> bool:  # a delivery to the closed port failed (and was logged)
        return api.get("/api/v1/destinations/crm").json()["stats"]["last_attempt_ms"] is not None

    until(lambda: api.get("/api/v1/status").json()["parts"]["processor"]["lag"] == 0)
    until(attempted)
    api.close()
    collector.close()
    server.stop()
    logs = server.logs()
    assert '"logger": "segflow.access"' in logs  # the log did capture these requests
    for secret in (*CANARIES, *secrets_seen):
        assert secret not in logs, f"{secret[:12]}... found in the application log"
    assert "leak-test.example" not in logs
