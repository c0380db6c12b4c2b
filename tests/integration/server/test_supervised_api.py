"""The admin API of a supervised ``segflow serve`` reaches what lives in the ``pipeline`` child:
the processor's and the loader's figures (a snapshot it publishes), profile splits and ML
scores (commands it runs from ``commands.sqlite``); real processes on real ports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.serve import Serve, until


def _send(serve: Serve, batch: list[dict[str, Any]]) -> None:
    answer = serve.collector.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.text


def test_status_shows_the_pipeline_childs_loader_and_backfill_figures(
    supervised: Callable[..., Serve],
) -> None:
    serve = supervised("--workers", "1")
    _send(serve, [{"type": "track", "userId": f"u{n}", "event": "Order Completed",
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
    _send(serve, [{"type": "track", "userId": "u9", "event": "Order Completed", "messageId": "o9"}])
    fresh = until(lambda: serve.api.get("/api/v1/segments/buyers").json()["freshness"])
    assert fresh["count"] >= 1 and 0 <= fresh["p50_ms"] <= fresh["max_ms"]


def test_a_profile_is_split_over_the_api_by_the_pipeline_child(
    supervised: Callable[..., Serve],
) -> None:
    serve = supervised("--workers", "1")
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
