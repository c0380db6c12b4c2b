"""The whole pipeline in one real ``segflow serve`` process: collect -> log -> processor ->
segments -> warehouse -> activation, driven only through its HTTP APIs and CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from tests.support.receivers import Receiver
from tests.support.serve import ALLOW_LOOPBACK, Serve
from tests.support.wait import until


# the supervised variant is `make test-long`'s: test_supervisor.py runs the supervisor by default
@pytest.fixture(
    scope="module", params=["single-process", pytest.param("supervised", marks=pytest.mark.long)]
)
def serve(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serve]:
    data = tmp_path_factory.mktemp("serve") / "data"
    started = Serve(data, env=ALLOW_LOOPBACK, supervised=request.param == "supervised")
    yield started
    started.stop()


def test_events_become_memberships_warehouse_rows_and_signed_webhooks(
    serve: Serve, receiver_factory: Callable[..., Receiver]
) -> None:
    _pipeline(serve.api, serve.collector, receiver_factory())


def _pipeline(api: httpx.Client, collector: httpx.Client, hooks: Receiver) -> None:
    made = api.post(
        "/api/v1/destinations",
        json={
            "name": "crm",
            "url": hooks.url,
            "subscriptions": [{"segment": "buyers", "traits": ["plan", "spent"]}],
        },
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert (
        api.post(
            "/api/v1/traits", json={"name": "spent", "rule": 'sum(revenue of "Order Completed")'}
        ).status_code
        == 201
    )
    bad = api.post("/api/v1/segments", json={"name": "buyers", "rule": 'did "Order Completed'})
    error = bad.json()["error"]
    assert bad.status_code == 400 and error["details"]["errors"][0]["line"] == 1
    assert error["code"] == "rule_syntax_error" and error["details"]["field"] == "rule"
    rule = 'did "Order Completed" and computed spent >= 100'
    assert api.post("/api/v1/segments", json={"name": "buyers", "rule": rule}).status_code == 201

    batch = [
        {"type": "page", "anonymousId": "anon-1", "name": "Home", "messageId": "e1"},
        {
            "type": "identify",
            "anonymousId": "anon-1",
            "userId": "u1",
            "messageId": "e2",
            "traits": {"plan": "pro", "email": "U1@Example.com"},
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Order Completed",
            "messageId": "e3",
            "properties": {"revenue": 120},
        },
        {
            "type": "track",
            "userId": "u2",
            "event": "Order Completed",
            "messageId": "e4",
            "properties": {"revenue": 5},
        },
    ]
    answer = collector.post("/v1/batch", json={"batch": batch}).json()
    assert answer["success"] is True and answer.get("refused", []) == [], answer

    members = until(lambda: api.get("/api/v1/segments/buyers/members").json()["members"])
    profile = api.get("/api/v1/profiles/email:u1@example.com").json()
    assert members == [profile["id"]]
    assert profile["segments"] == ["buyers"] and profile["computed_traits"] == {"spent": 120}
    assert {"type": "anonymous_id", "value": "anon-1"} in [
        {"type": i["type"], "value": i["value"]} for i in profile["identities"]
    ]

    first = until(lambda: hooks.requests)[0]
    payload = Webhook(secret).verify(
        first.body, first.headers
    )  # a Standard Webhooks implementation
    assert payload["data"]["segment"] == "buyers" and payload["data"]["kind"] == "entered"
    assert payload["data"]["traits"] == {"plan": "pro", "spent": 120}

    def loaded() -> Any:
        status = api.get("/api/v1/status").json()["parts"]
        loader = status["warehouse_loader"]
        return loader["lag"] == 0 == loader["changes_lag"] and status["processor"]["lag"] == 0

    until(loaded)
    preview = until(
        lambda: (
            (p := api.post("/api/v1/segments/preview", json={"rule": rule}).json())["count"] and p
        )
    )
    assert preview["sample"] == [profile["id"]]  # SQL over the warehouse agrees

    shown = api.get("/api/v1/segments/buyers").json()
    assert shown["size"] == 1 and shown["version"] == 1
    # freshness: acknowledged -> membership change committed, measured per segment
    order = {"type": "track", "userId": "u3", "event": "Order Completed", "messageId": "e5",
             "properties": {"revenue": 150}}  # fmt: skip
    assert collector.post("/v1/batch", json={"batch": [order]}).status_code == 200
    until(lambda: len(api.get("/api/v1/segments/buyers/members").json()["members"]) == 2)
    # supervised, the figures come from the pipeline child's snapshot, published apart from
    # the state the members are read from: they may follow the members by a moment
    fresh = until(lambda: api.get("/api/v1/segments/buyers").json()["freshness"])
    assert fresh["count"] >= 1 and 0 <= fresh["p50_ms"] <= fresh["max_ms"] < 30_000
    assert api.get("/api/v1/status").json()["freshness"]["buyers"]["count"] >= 1
    listed = {d["name"]: d["size"] for d in api.get("/api/v1/segments").json()}
    assert listed["buyers"] == 2  # u1 and u3
    until(loaded)  # the membership intervals below are the warehouse's
    history = api.get("/api/v1/profiles/user_id:u1/segments/history").json()
    events = api.get("/api/v1/profiles/user_id:u1/events").json()["events"]
    ordered = next(e["timestamp_ms"] for e in events if e["message_id"] == "e3")
    # valid time: u1 is a buyer from its order on, by the rules over the events (as the SQL)
    assert [(m["segment"], m["entered_at_ms"], m["exited_at_ms"]) for m in history["valid"]] == [
        ("buyers", ordered, None)
    ]
    before = api.get(f"/api/v1/segments/buyers/members?at_ms={ordered - 1}").json()
    after = api.get(f"/api/v1/segments/buyers/members?at_ms={ordered}").json()
    assert before["members"] == [] and after["members"] == [profile["id"]]
    assert before["time"] == "valid"
    # recorded time: from when segflow committed the change the webhook told
    until(lambda: api.get("/api/v1/status").json()["parts"]["warehouse_loader"]["lag"] == 0)
    traits = api.get("/api/v1/profiles/user_id:u1/traits/history").json()
    assert {(c["key"], c["value"]) for c in traits["history"]} >= {("plan", "pro")}
    history = api.get("/api/v1/profiles/user_id:u1/segments/history").json()
    recorded = [(m["segment"], m["entered_at_ms"], m["exited_at_ms"]) for m in history["recorded"]]
    assert recorded == [("buyers", payload["data"]["recorded_at_ms"], None)]
    assert payload["data"]["recorded_at_ms"] >= payload["data"]["valid_at_ms"] >= ordered
    entered_ms = payload["data"]["recorded_at_ms"]
    path = "/api/v1/segments/buyers/members?as_recorded=true&at_ms="
    assert api.get(f"{path}{entered_ms - 1}").json()["members"] == []
    assert api.get(f"{path}{entered_ms}").json()["members"] == [profile["id"]]

    edited = api.put("/api/v1/segments/buyers", json={"rule": rule.replace("100", "500")})
    assert edited.status_code == 200 and edited.json()["version"] == 2
    # the edit is backfilled: u1 (spent 120) and u3 (150) leave without a new event
    until(lambda: api.get("/api/v1/segments/buyers/members").json()["members"] == [])

    audit = api.get("/api/v1/audit?target=buyers").json()["entries"]
    assert [e["action"] for e in audit][:2] == ["segment.update", "segment.create"]
    assert audit[0]["before"] == {"rule": rule} and audit[0]["after"]["version"] == 2
    assert audit[0]["actor"].startswith("token:")
    made_crm = api.get("/api/v1/audit?action=destination.create").json()["entries"][0]
    assert made_crm["target"] == "crm" and made_crm["before"] is None
    assert made_crm["after"]["subscriptions"][0]["segment"] == "buyers"
    assert "whsec_" not in str(made_crm)  # secrets never reach the audit log


def test_a_segment_created_later_is_backfilled_from_history(serve: Serve) -> None:
    api, collector = serve.api, serve.collector
    batch = [
        {"type": "track", "userId": "v1", "event": "Product Viewed", "messageId": f"v{n}"}
        for n in range(3)
    ]
    assert collector.post("/v1/batch", json={"batch": batch}).status_code == 200
    until(lambda: api.get("/api/v1/profiles/user_id:v1").status_code == 200)
    rule = 'did "Product Viewed" at least 3 times in last 1 hour'
    assert api.post("/api/v1/segments", json={"name": "viewers", "rule": rule}).status_code == 201
    members = until(lambda: api.get("/api/v1/segments/viewers/members").json()["members"])
    assert members == [api.get("/api/v1/profiles/user_id:v1").json()["id"]]


def test_the_api_refuses_without_a_token_and_names_bad_fields(serve: Serve) -> None:
    api = serve.api
    with httpx.Client() as plain:
        anon = plain.get(f"{api.base_url}/api/v1/segments")
    assert anon.status_code == 401
    assert (
        api.post("/api/v1/segments", json={"name": "Bad Name", "rule": "true"}).json()["error"][
            "details"
        ]["field"]
        == "name"
    )
    assert api.get("/api/v1/segments/nope").status_code == 404
    for n in range(3):
        api.post("/api/v1/segments", json={"name": f"all{n}", "rule": "true"})
    first = api.get("/api/v1/segments/all0/members?limit=1").json()
    assert first["returned"] in (0, 1)
    if first["next_cursor"]:
        rest = api.get(f"/api/v1/segments/all0/members?cursor={first['next_cursor']}").json()
        assert first["members"][0] not in rest["members"]
    check = api.post("/api/v1/segments/check", json={"rule": 'did "A" in last 3 parsecs'}).json()
    assert check["ok"] is False and "parsecs" in check["diagnostics"][0]["message"]
    assert json.loads(api.get("/api/v1/status").text)["events"] >= 0
