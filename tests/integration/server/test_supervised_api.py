"""The admin API of a supervised ``segflow serve`` reaches what lives in the ``pipeline`` child:
the processor's and the loader's figures (a snapshot it publishes), profile splits and ML
scores (commands it runs from ``commands.sqlite``); real processes on real ports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.serve import Serve
from tests.support.wait import until


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """One supervised serve for the module (each test its own users and segments)."""
    started = Serve(
        tmp_path_factory.mktemp("supervised") / "data", "--workers", "1", supervised=True
    )
    yield started
    started.stop()


def _send(serve: Serve, batch: list[dict[str, Any]]) -> None:
    answer = serve.collector.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.text


def test_status_shows_the_pipeline_childs_loader_and_backfill_figures(
    serve: Serve,
) -> None:
    _send(serve, [{"type": "track", "userId": f"buyer-{n}", "event": "Order Completed",
                   "messageId": f"o{n}"} for n in range(3)])  # fmt: skip

    def loaded() -> bool:
        parts = serve.status()["parts"]
        return parts["warehouse_loader"]["changes_lag"] == 0 == parts["processor"]["lag"]

    until(loaded, what="changes_lag from the pipeline child")
    made = serve.api.post(
        "/api/v1/segments", json={"name": "buyers", "rule": 'did "Order Completed"'}
    )
    assert made.status_code == 201, made.text
    until(lambda: len(serve.api.get("/api/v1/segments/buyers/members").json()["members"]) == 3)

    def settled() -> dict[str, Any] | None:
        status = serve.status()
        processor = status["parts"]["processor"]
        done = processor["backfilling"] is False and processor["backfill"]["running"] is False
        return status if done else None

    status = until(settled, what="the backfill of buyers reported done")
    assert status["parts"]["warehouse_loader"]["last_error"] is None
    assert 0 <= status["figures_age_ms"] < 60_000
    _send(
        serve,
        [{"type": "track", "userId": "buyer-9", "event": "Order Completed", "messageId": "o9"}],
    )
    fresh = until(lambda: serve.api.get("/api/v1/segments/buyers").json()["freshness"])
    assert fresh["count"] >= 1 and 0 <= fresh["p50_ms"] <= fresh["max_ms"]


def test_a_profile_is_split_over_the_api_by_the_pipeline_child(
    serve: Serve,
) -> None:
    _send(serve, [
        {"type": "identify", "anonymousId": "anon-1", "userId": "u1", "messageId": "i1",
         "traits": {"email": "u1@example.com"}},
        {"type": "identify", "anonymousId": "kiosk-7", "userId": "u1", "messageId": "i2"},
        {"type": "track", "anonymousId": "kiosk-7", "event": "Product Viewed", "messageId": "t1"},
    ])  # fmt: skip

    def linked() -> bool:
        got = serve.api.get("/api/v1/profiles/anonymous_id:kiosk-7")
        return got.status_code == 200 and got.json()["id"] == _profile(serve, "user_id:u1")["id"]

    until(linked, what="kiosk-7 merged into u1's profile")
    url = "/api/v1/profiles/user_id:u1/split"
    refused = serve.api.post(url, json={"identifiers": ["anonymous_id:someone-else"]})
    assert refused.status_code == 400, refused.text  # the pipeline's ValidationError, carried
    assert refused.json()["error"]["details"]["field"] == "identifiers"
    done = serve.api.post(url, json={"identifiers": ["anonymous_id:kiosk-7"]})
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["split_off"] != result["kept"] == _profile(serve, "user_id:u1")["id"]
    until(lambda: _profile(serve, "anonymous_id:kiosk-7").get("id") == result["split_off"],
          what="the split seen by the HTTP worker's reader")  # fmt: skip
    audit = serve.api.get("/api/v1/audit?action=profile.split").json()["entries"]
    assert [e["target"] for e in audit] == [result["kept"]]


def _profile(serve: Serve, ident: str) -> dict[str, Any]:
    got = serve.api.get(f"/api/v1/profiles/{ident}")
    return got.json() if got.status_code == 200 else {}


def test_a_suppression_reaches_the_collector_of_the_http_workers(
    serve: Serve,
) -> None:
    _send(
        serve, [{"type": "track", "userId": "quiet-1", "event": "Page Viewed", "messageId": "q0"}]
    )
    until(lambda: _profile(serve, "user_id:quiet-1"), what="quiet-1's profile")
    asked = serve.api.post("/api/v1/regulations", json={"type": "suppress",
                           "identifiers": [{"type": "user_id", "value": "quiet-1"}]})  # fmt: skip
    assert asked.status_code in (200, 201, 202), asked.text
    reg = f"/api/v1/regulations/{asked.json()['id']}"
    until(lambda: serve.api.get(reg).json()["status"] == "finished", what="the suppression ran")
    sent = iter(range(1, 10_000))

    def dropped() -> bool:
        """quiet-1's next event is acknowledged but not appended (the worker reloaded the list)."""
        before = serve.status()["events"]
        _send(serve, [{"type": "track", "userId": "quiet-1", "event": "Page Viewed",
                       "messageId": f"q{next(sent)}"}])  # fmt: skip
        return serve.status()["events"] == before

    until(dropped, what="the HTTP worker drops quiet-1's events")
    assert dropped()  # and keeps dropping them
    before = serve.status()["events"]
    _send(serve, [{"type": "track", "userId": "loud-2", "event": "Page Viewed", "messageId": "l1"}])
    assert serve.status()["events"] == before + 1  # others are collected


def _metric(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric's samples in a Prometheus text page."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            found[series[len(name) :]] = float(value)
    return found


def test_metrics_add_up_every_process_of_the_server(serve: Serve) -> None:
    """/metrics is answered by an HTTP worker, but the processor counts in the pipeline child:
    the page has both, and one memory gauge per process."""
    _send(serve, [{"type": "track", "userId": f"metered-{n}", "event": "Metered",
                   "messageId": f"metered-{n}"} for n in range(7)])  # fmt: skip

    def page() -> str | None:
        # every child publishes each second: wait until each has, and the counters add up
        text = serve.api.get("/metrics").text
        processed = sum(_metric(text, "segflow_processor_events_total").values())
        accepted = sum(_metric(text, "segflow_collect_events_accepted_total").values())
        memory = _metric(text, "process_resident_memory_bytes")
        pids = {c["pid"] for c in serve.children().values()}
        every_child = {f'{{pid="{p}"}}' for p in pids} <= set(memory)  # one series each
        return text if processed >= 7 and accepted >= 7 and every_child else None

    text = until(page, what="every child's series on an HTTP worker's /metrics")
    assert text.count("# TYPE segflow_processor_events_total counter") == 1  # merged, not repeated
