"""Activation inside a real ``segflow serve`` process, driven through its HTTP APIs: consent
changes reach consent-aware destinations, pending deliveries survive SIGKILL, and secrets
never reach a file in clear."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from standardwebhooks import Webhook
from tests.support.receivers import Receiver
from tests.support.serve import ALLOW_LOOPBACK, Serve
from tests.support.wait import until

pytestmark = pytest.mark.slow


def webhooks(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """The successful requests' payloads, each verified as Standard Webhooks specifies."""
    hook = Webhook(secret)
    return [hook.verify(r.body, r.headers)["data"] for r in receiver.ok()]


def identify(user: str, n: int, advertising: bool) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "messageId": f"{user}-consent-{n}",
        "traits": {"consent": {"advertising": advertising}},
    }


def test_consent_withdrawn_and_granted_through_identify(
    serve_factory: Callable[..., Serve], receiver_factory: Callable[..., Receiver]
) -> None:
    serve = serve_factory(env=ALLOW_LOOPBACK)
    ads_hook, crm_hook = receiver_factory(), receiver_factory()
    api = serve.api
    assert api.post(
        "/api/v1/segments", json={"name": "signed", "rule": 'did "Signed Up"'}
    ).is_success
    secrets = {}
    for name, hook, purpose in (("ads", ads_hook, "advertising"), ("crm", crm_hook, None)):
        made = api.post(
            "/api/v1/destinations",
            json={"name": name, "url": hook.url, "consent_purpose": purpose,
                  "subscriptions": [{"segment": "signed"}]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        secrets[name] = made.json()["secret"]
    serve.track(
        identify("u1", 1, True),
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "s1"},
    )
    assert until(lambda: len(ads_hook.ok()) == 1 and len(crm_hook.ok()) == 1)

    serve.track(identify("u1", 2, False))  # no membership change: still in "signed"
    assert until(lambda: len(ads_hook.ok()) == 2)
    serve.track(identify("u1", 3, True))
    assert until(lambda: len(ads_hook.ok()) == 3)

    ads = webhooks(ads_hook, secrets["ads"])
    assert [(d["segment"], d["kind"]) for d in ads] == [
        ("signed", "entered"), ("signed", "exited"), ("signed", "entered"),
    ]  # fmt: skip
    assert [d["sequence"] for d in ads] == sorted(d["sequence"] for d in ads)
    assert [d["kind"] for d in webhooks(crm_hook, secrets["crm"])] == ["entered"]
    crm = api.get("/api/v1/destinations/crm/deliveries").json()["stats"]
    assert (crm["pending"], crm["delivered"]) == (0, 1)  # nothing queued for it since
    member = api.get("/api/v1/profiles/user_id:u1/segments").json()["segments"]
    assert member == ["signed"]

    rotated = api.post("/api/v1/destinations/ads/secrets").json()["secret"]
    serve.stop()
    written = b"".join(p.read_bytes() for p in serve.data.rglob("*") if p.is_file())
    written += serve.log_path.read_bytes()
    for secret in (*secrets.values(), rotated):
        assert secret.encode() not in written
        assert secret.removeprefix("whsec_").encode() not in written


def test_sigkill_with_pending_deliveries_then_restart(
    serve_factory: Callable[..., Serve], receiver_factory: Callable[..., Receiver]
) -> None:
    up = threading.Event()
    hook = receiver_factory(lambda n, h, b: (200 if up.is_set() else 503, {}, 0.0))
    serve = serve_factory(env=ALLOW_LOOPBACK)
    api = serve.api
    assert api.post(
        "/api/v1/segments", json={"name": "signed", "rule": 'did "Signed Up"'}
    ).is_success
    made = api.post(
        "/api/v1/destinations",
        json={"name": "crm", "url": hook.url, "backoff_base_ms": 50, "backoff_max_ms": 200,
              "subscriptions": [{"segment": "signed"}]},
    )  # fmt: skip
    secret = made.json()["secret"]
    serve.track(
        *({"type": "track", "userId": f"u{i}", "event": "Signed Up", "messageId": f"s{i}"}
          for i in range(5))
    )  # fmt: skip

    def stats() -> dict[str, int]:
        return serve.api.get("/api/v1/destinations/crm/deliveries").json()["stats"]  # type: ignore[no-any-return]

    assert until(lambda: stats()["pending"] == 5 and len(hook.requests) >= 5)
    serve.kill()
    assert hook.ok() == []
    up.set()
    serve.start()
    assert until(lambda: stats()["delivered"] == 5)
    delivered = webhooks(hook, secret)
    assert len({d["id"] for d in delivered}) == 5 == len({d["profile_id"] for d in delivered})
    failed = [msgspec.json.decode(r.body)["data"]["id"] for r in hook.requests if r.status == 503]
    assert set(failed) <= {d["id"] for d in delivered}  # a retry keeps its webhook-id
