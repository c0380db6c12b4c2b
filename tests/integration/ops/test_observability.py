"""/metrics, /healthz, /readyz and request ids on a real ``segflow serve``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.support.serve import make_source, make_token
from tests.support.wait import until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    answer = httpx.get(f"{url}/metrics", headers=headers or {}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_what_each_part_did(
    tmp_path: Path, serve_factory: Callable[..., Any], receiver_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    key = make_source(data, "web")
    token = make_token(data, "admin")
    server = serve_factory(
        data=data, env={"SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]'}, source=None, role=None
    )
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    receiver = receiver_factory()
    try:
        made = api.post(
            "/api/v1/destinations",
            json={"name": "crm", "url": receiver.url, "subscriptions": [{"segment": "buyers"}]},
        )
        assert made.status_code == 201, made.text
        rule = {"name": "buyers", "rule": 'did "Order Completed"'}
        assert api.post("/api/v1/segments", json=rule).status_code == 201
        batch = [
            {"type": "track", "userId": f"u{i}", "event": "Order Completed", "messageId": f"m{i}"}
            for i in range(5)
        ]
        batch.append({"type": "track", "userId": "u9", "messageId": "bad"})  # no event: refused
        batch.append(dict(batch[0]))  # a duplicate messageId
        answer = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(key, ""))
        assert answer.status_code == 200 and answer.json()["accepted"] == 6, answer.text
        assert httpx.post(f"{server.url}/v1/track", json={}, auth=("wrong", "")).status_code == 401

        def settled() -> Samples | None:
            s = scrape(server.url)
            done = (
                value(s, "segflow_processor_events_total", group="processor") >= 5
                and value(s, "segflow_deliveries", destination="crm", status="delivered") == 5
                and value(s, "segflow_consumer_lag_records", group="warehouse") == 0
            )
            return s if done else None

        s = until(settled)
        assert api.get("/api/v1/status").status_code == 200
        s = scrape(server.url)
    finally:
        api.close()
    assert value(s, "segflow_collect_events_received_total", source="web") == 7
    assert value(s, "segflow_collect_events_accepted_total", source="web") == 5
    assert value(s, "segflow_collect_events_duplicate_total", source="web") == 1
    refused = {"source": "web", "reason": "invalid_message", "field": "event"}
    assert value(s, "segflow_collect_events_refused_total", **refused) == 1
    assert (
        value(s, "segflow_http_requests_refused_total", app="collect", reason="unauthorized") == 1
    )
    assert value(s, "segflow_memberships_total", segment="buyers", kind="entered") == 5
    assert value(s, "segflow_processor_events_total", group="processor") == 5
    assert value(s, "segflow_log_appended_records_total", partition="0") >= 0
    assert sum(v for (n, _), v in s.items() if n == "segflow_log_appended_records_total") == 5
    assert value(s, "segflow_consumer_lag_records", group="processor") == 0
    assert value(s, "segflow_log_dead_letters") == 1
    assert value(s, "segflow_log_size_bytes") > 0
    assert value(s, "segflow_job_duration_seconds_count", job="warehouse_load", status="succeeded") >= 1  # fmt: skip
    assert value(s, "segflow_loader_events_loaded_total") == 5
    assert value(s, "segflow_processor_batch_duration_seconds_count", group="processor") >= 1
    batch_route = {"app": "collect", "route": "batch", "method": "POST", "status": "200"}
    assert value(s, "segflow_http_request_duration_seconds_count", **batch_route) == 1
    status_route = {"app": "admin", "route": "/api/v1/status", "method": "GET", "status": "200"}
    assert value(s, "segflow_http_request_duration_seconds_count", **status_route) == 1
    assert value(s, "process_resident_memory_bytes") > 0
    # no raw paths, write keys or tokens in any label
    labels = " ".join(f"{k}={v}" for (_, ls) in s for k, v in ls)
    assert key not in labels and token not in labels


def test_health_readiness_and_request_ids(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    key = make_source(data, "web")
    # the processor owns partition 0 only: events of other partitions are never consumed
    env = {
        "SEGFLOW_STREAM__PARTITIONS": "[0]",
        "SEGFLOW_OBSERVABILITY__READY_MAX_LAG": "2",
        "SEGFLOW_WAREHOUSE__FLUSH_INTERVAL_MS": "50",
    }
    server = serve_factory("--log-level", "info", data=data, env=env, source=None, role=None)
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["services"] == {"ok": True}

    sent = httpx.post(
        f"{server.url}/v1/batch",
        json={"batch": [{"type": "track", "userId": f"user-{i}", "event": "E"} for i in range(40)]},
        auth=(key, ""),
        headers={"X-Request-Id": "trace-abc.1"},
    )
    assert sent.status_code == 200
    assert sent.headers["x-request-id"] == "trace-abc.1"
    generated = httpx.get(f"{server.url}/healthz").headers["x-request-id"]
    assert len(generated) == 16 and generated != "trace-abc.1"
    hostile = ("a {log} injection " * 20).strip()
    answer = httpx.get(f"{server.url}/healthz", headers={"X-Request-Id": hostile})
    assert len(answer.headers["x-request-id"]) == 16  # replaced, not echoed

    def not_ready() -> httpx.Response | None:
        answer = httpx.get(f"{server.url}/readyz")
        return answer if answer.status_code == 503 else None

    answer = until(not_ready)
    body = answer.json()
    assert body["ready"] is False and body["checks"]["consumers"]["ok"] is False
    assert "processor lags" in body["reason"] and "max 2" in body["reason"]
    assert body["checks"]["consumers"]["lag"]["processor"] > 2
    assert body["checks"]["stores"] == {"ok": True}

    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "trace-abc.1"]
    assert mine and mine[0]["logger"] == "segflow.access"
    assert mine[0]["http"]["route"] == "batch" and mine[0]["http"]["status"] == 200


def test_metrics_can_require_a_read_token(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    token = make_token(data, "read")
    server = serve_factory(
        data=data, env={"SEGFLOW_OBSERVABILITY__METRICS_AUTH": "token"}, source=None, role=None
    )
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    bad = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer sft_x_y"})
    assert bad.status_code == 401
    assert scrape(server.url, {"Authorization": f"Bearer {token}"})
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes stay open


def test_freshness_is_a_metric_per_segment(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    key = make_source(data, "web")
    token = make_token(data, "admin")
    server = serve_factory(data=data, source=None, role=None)
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})

    def order(user: str) -> None:
        event = {"type": "track", "userId": user, "event": "Order Completed", "messageId": user}
        sent = httpx.post(f"{server.url}/v1/batch", json={"batch": [event]}, auth=(key, ""))
        assert sent.status_code == 200, sent.text

    def members() -> int:
        return len(api.get("/api/v1/segments/buyers/members").json()["members"])

    try:
        rule = {"name": "buyers", "rule": 'did "Order Completed"'}
        assert api.post("/api/v1/segments", json=rule).status_code == 201
        order("u1")
        until(lambda: members() == 1)  # the rule set is live (or backfilled u1)
        order("u2")  # caused by an event, with the rule set live: measured
        until(lambda: members() == 2)
        fresh = {"segment": "buyers", "kind": "event"}
        samples = until(
            lambda: (
                (s := scrape(server.url))
                and value(s, "segflow_membership_freshness_seconds_count", **fresh) >= 1
                and s
            )
        )
    finally:
        api.close()
    assert value(samples, "segflow_membership_freshness_seconds_sum", **fresh) < 30
