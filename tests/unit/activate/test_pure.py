"""SSRF guard, signatures, retry policy, identifier hashing, payload formats, consent."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from segflow.activate.exceptions import (
    DestinationGoneError,
    InvalidDestinationError,
    RejectedDeliveryError,
    RetryableDeliveryError,
    UnsafeUrlError,
)
from segflow.activate.identifiers import PhoneRules, hash_email, hash_phone, normalize_phone
from segflow.activate.models import Destination
from segflow.activate.payloads import ChangeContext, build_payload, consent_denied
from segflow.activate.policy import backoff_ms, classify, next_attempt_ms
from segflow.activate.signing import new_secret, sign_headers
from segflow.activate.ssrf import UrlGuard


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.1.1/",
        "http://172.20.0.1/",
        "http://192.168.0.10/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError) as info:
        UrlGuard().check(url)
    assert info.value.field == "url" and "allow_list" in info.value.message


def test_hostname_resolving_to_private_address_is_refused() -> None:
    guard = UrlGuard(resolver=lambda host: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(UnsafeUrlError) as info:
        guard.check("https://sneaky.example/hook")
    assert info.value.address == "10.0.0.7"


def test_allow_list_by_network_and_by_host() -> None:
    UrlGuard(["127.0.0.1/32"]).check("http://127.0.0.1:9/x")
    UrlGuard(["receiver.internal"], resolver=lambda h: ["10.0.0.1"]).check(
        "http://receiver.internal/"
    )
    with pytest.raises(UnsafeUrlError):
        UrlGuard(["127.0.0.1/32"]).check("http://127.0.0.2/")


def test_non_http_urls_are_invalid() -> None:
    with pytest.raises(InvalidDestinationError):
        UrlGuard().check("file:///etc/passwd")


def test_signatures_verify_with_the_standardwebhooks_package() -> None:
    secret = new_secret()
    body = b'{"type":"segment.entered"}'
    import time

    now = int(time.time())
    headers = sign_headers([secret], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"type": "segment.entered"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_rotation_sends_both_signatures() -> None:
    old, new = new_secret(), new_secret()
    import time

    headers = sign_headers([new, old], "msg_2", int(time.time()), b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(b"{}", headers)
    Webhook(new).verify(b"{}", headers)


def test_classification() -> None:
    assert classify(200, {}) is None
    assert isinstance(classify(410, {}), DestinationGoneError)
    assert isinstance(classify(404, {}), RejectedDeliveryError)
    for status in (408, 429, 500, 503, 301, 302):
        assert isinstance(classify(status, {}), RetryableDeliveryError)


def test_retry_after_wins_over_a_shorter_backoff() -> None:
    err = classify(429, {"retry-after": "30"})
    assert isinstance(err, RetryableDeliveryError)
    assert (
        next_attempt_ms(err, now_ms=0, attempt=1, base_ms=1000, max_ms=10**9, jitter=1.0) == 30_000
    )


@settings(max_examples=50)
@given(st.integers(1, 60), st.floats(0.5, 1.0))
def test_backoff_is_bounded_and_grows(attempt: int, jitter: float) -> None:
    delay = backoff_ms(attempt=attempt, base_ms=100, max_ms=60_000, jitter=jitter)
    assert 0 < delay <= 60_000
    assert backoff_ms(attempt=attempt + 1, base_ms=100, max_ms=60_000, jitter=1.0) >= backoff_ms(
        attempt=attempt, base_ms=100, max_ms=60_000, jitter=1.0
    )


def test_identifier_normalisation_and_hashing() -> None:
    expected = hashlib.sha256(b"john.doe@example.com").hexdigest()
    assert hash_email("  John.Doe@Example.com\n") == expected
    assert normalize_phone("+44 (0)20-7946 0958") == "+442079460958"
    assert normalize_phone("020 7946 0958", "44") == "+442079460958"
    assert normalize_phone("0044 20 7946 0958", digits_only=True) == "442079460958"
    # Google Customer Match hashes E.164 with "+"; Meta's and TikTok's lists digits only
    assert hash_phone("+1 415 555 0123") == hashlib.sha256(b"+14155550123").hexdigest()
    digits = PhoneRules("digits")
    assert hash_phone("+1 (415) 555-0123", digits) == hashlib.sha256(b"14155550123").hexdigest()
    assert hash_phone("(415) 555-0123", PhoneRules("digits", "1")) == hash_phone(
        "+14155550123", digits
    )


CTX = ChangeContext(
    profile_id="p1",
    segment="vip",
    kind="exited",
    at_ms=1_700_000_000_123,
    sequence=4,
    identities=[("user_id", "u1"), ("email", "A@B.co"), ("phone", "+1 415 555 0123")],
    traits={"plan": "pro"},
    webhook_id="msg_x",
)


def test_hashed_identifiers_replace_raw_ones() -> None:
    payload = build_payload(Destination(name="ads", url="https://x", identifiers="hashed"), CTX)
    ids = {i["type"]: i["value"] for i in payload["data"]["identifiers"]}
    assert ids == {
        "user_id": "u1",
        "email_sha256": hash_email("a@b.co"),
        "phone_sha256": hash_phone("+14155550123"),
    }
    assert "A@B.co" not in str(payload)
    meta = Destination(name="m", url="https://x", identifiers="hashed", phone_format="digits")
    ids = {i["type"]: i["value"] for i in build_payload(meta, CTX)["data"]["identifiers"]}
    assert ids["phone_sha256"] == hashlib.sha256(b"14155550123").hexdigest()


def test_segment_format_events() -> None:
    track = build_payload(
        Destination(name="s", url="https://x", payload_format="segment_track"), CTX
    )
    assert track["type"] == "track" and track["event"] == "Audience Exited"
    assert track["properties"]["audience_key"] == "vip" and track["properties"]["vip"] is False
    assert track["userId"] == "u1" and track["messageId"] == "msg_x"
    ident = build_payload(
        Destination(name="s", url="https://x", payload_format="segment_identify"), CTX
    )
    assert ident["type"] == "identify" and ident["traits"]["vip"] is False
    assert ident["timestamp"] == "2023-11-14T22:13:20.123Z"


def test_consent() -> None:
    assert consent_denied({"advertising": False}, "advertising")
    assert consent_denied({"categoryPreferences": {"Advertising": "false"}}, "advertising")
    assert not consent_denied({"advertising": True}, "advertising")
    assert not consent_denied({"advertising": False}, None)
    assert not consent_denied("denied", "advertising")  # not a mapping: no answer
