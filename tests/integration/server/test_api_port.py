"""``segflow serve --api-port``: the admin API in processes of its own, on a port of its own,
answering profile and members reads while the collector on the port takes a steady stream of
batches; real processes on real ports."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tests.support.serve import Serve
from tests.support.traffic import Traffic
from tests.support.wait import until

USERS = [f"u{k}" for k in range(7)]  # the users Traffic sends as


def test_the_api_port_serves_correct_reads_from_its_own_process_while_ingest_goes_on(
    serve_factory: Callable[..., Serve],
) -> None:
    serve = serve_factory(supervised=True, api_port=True)
    api = serve.api
    children = serve.children()
    assert {name: c["role"] for name, c in children.items()} == {
        "http-1": "collect", "api-1": "api", "pipeline": "process,load", "activate": "activate",
    }  # fmt: skip
    assert len({c["pid"] for c in children.values()}) == 4
    for body in ({"name": "pingers", "rule": 'did "Ping"'},):
        made = api.post("/api/v1/segments", json=body)
        assert made.status_code == 201, made.text
    made = api.post("/api/v1/traits", json={"name": "pings", "rule": 'sum(n of "Ping")'})
    assert made.status_code == 201, made.text

    traffic = Traffic(serve.collector)
    statuses: list[int] = []
    try:
        until(lambda: traffic.acked >= 100, what="traffic flows")

        def known() -> bool:
            return all(api.get(f"/api/v1/profiles/user_id:{u}").status_code == 200 for u in USERS)

        until(known, what="every user's profile")
        seen = traffic.acked
        for n in range(60):  # reads on the API port while the collector takes batches
            statuses.append(api.get(f"/api/v1/profiles/user_id:{USERS[n % 7]}").status_code)
            statuses.append(api.get("/api/v1/segments/pingers/members?limit=3").status_code)
        until(lambda: traffic.acked >= seen + 100, what="ingest went on during the reads")
    finally:
        acked = traffic.finish()
    assert set(statuses) == {200}, statuses

    until(lambda: serve.status()["parts"]["processor"]["lag"] == 0, what="processor caught up")

    def pings() -> int:
        found = [api.get(f"/api/v1/profiles/user_id:{user}") for user in USERS]
        return sum(
            r.json()["computed_traits"].get("pings", 0) for r in found if r.status_code == 200
        )

    until(lambda: pings() == acked, what="every acknowledged event counted in the reads")
    ids = {api.get(f"/api/v1/profiles/user_id:{user}").json()["id"] for user in USERS}
    pages, cursor = [], ""
    while True:  # the members, paged 3 at a time, are the 7 profiles once each
        page = api.get(f"/api/v1/segments/pingers/members?limit=3{cursor}").json()
        pages.append(page["members"])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert [len(p) for p in pages] == [3, 3, 1] and {m for p in pages for m in p} == ids


def test_with_an_api_port_the_port_collects_and_the_api_answers_on_its_own_port(
    serve_factory: Callable[..., Serve],
) -> None:
    serve = serve_factory(supervised=True, api_port=True)
    assert httpx.get(f"{serve.url}/api/v1/health", timeout=10).status_code == 404
    assert httpx.get(f"{serve.url}/healthz", timeout=10).status_code == 200
    assert serve.api.get("/api/v1/health").status_code == 200
    serve.track({"type": "track", "userId": "solo", "event": "Ping", "messageId": "s1"})
    found = until(
        lambda: serve.api.get("/api/v1/profiles/user_id:solo").status_code == 200,
        what="the profile on the API port",
    )
    assert found
    missing = serve.api.get("/api/v1/segments/nope/members")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = serve.api.get("/api/v1/profiles/nope")
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "identifier"
    logs = serve.logs()
    assert f"{serve.api_url}/api/v1" in logs and f"{serve.url}/v1" in logs
