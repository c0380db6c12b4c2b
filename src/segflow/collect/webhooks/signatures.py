"""The vendors' documented signature schemes; each check raises :class:`BadSignature`.

>>> import hmac, hashlib
>>> body, secret = b'{"id": "evt_1"}', "whsec_test"
>>> sig = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
>>> stripe(f"t=1700000000,v1={sig}", body, secret, now_ms=1_700_000_100_000, tolerance_s=300)
>>> try:
...     stripe(f"t=1700000000,v1={sig}", body, secret, now_ms=1_700_001_000_000, tolerance_s=300)
... except BadSignature as exc:
...     print(exc.details["reason"])
timestamp 1000 s from now, outside the 300 s window
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from segflow.collect.webhooks.exceptions import BadSignature


def _mac(secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()


def within(header: str, at_ms: int, now_ms: int, tolerance_s: int) -> None:
    """Refuse a signed timestamp outside the replay window (either way: clocks drift)."""
    skew_s = abs(now_ms - at_ms) // 1000
    if skew_s > tolerance_s:
        raise BadSignature(
            header, f"timestamp {skew_s} s from now, outside the {tolerance_s} s window"
        )


def stripe(header: str | None, body: bytes, secret: str, *, now_ms: int, tolerance_s: int) -> None:
    """``Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "t.body">`` (any v1 may match)."""
    name = "stripe-signature"
    parts = [p.split("=", 1) for p in (header or "").split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    signatures = [v.strip() for k, v in parts if k.strip() == "v1"]
    if not stamps or not stamps[0].strip().isdigit() or not signatures:
        raise BadSignature(name, "missing, or without t= and v1=")
    expected = _mac(secret, stamps[0].strip().encode() + b"." + body).hex()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise BadSignature(name, "no v1 signature matches the signing secret")
    within(name, int(stamps[0]) * 1000, now_ms, tolerance_s)


def zendesk(
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    secret: str,
    *,
    now_ms: int,
    tolerance_s: int,
) -> None:
    """``X-Zendesk-Webhook-Signature`` = base64 HMAC-SHA256(timestamp + body), with
    ``X-Zendesk-Webhook-Signature-Timestamp`` (ISO-8601) in the replay window."""
    name = "x-zendesk-webhook-signature"
    if not signature or not timestamp:
        raise BadSignature(name, "missing signature or timestamp header")
    expected = base64.b64encode(_mac(secret, timestamp.encode() + body)).decode()
    if not hmac.compare_digest(expected, signature.strip()):
        raise BadSignature(name, "does not match the signing secret")
    try:
        at = datetime.fromisoformat(timestamp.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadSignature(name + "-timestamp", "not an ISO-8601 time") from None
    within(name + "-timestamp", int(at.timestamp() * 1000), now_ms, tolerance_s)


# HubSpot decodes these escapes of the URI before it signs it (its v3 documentation)
_HUBSPOT_DECODE = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


def hubspot_uri(url: str) -> str:
    """The URI as HubSpot signs it (``hubspot_uri("https://h/p?a=%3A") == "https://h/p?a=:"``)."""
    for escaped, char in _HUBSPOT_DECODE.items():
        url = url.replace(escaped, char).replace(escaped.lower(), char)
    return url


def hubspot(
    signature: str | None,
    timestamp: str | None,
    method: str,
    url: str,
    body: bytes,
    secret: str,
    *,
    now_ms: int,
    tolerance_s: int,
) -> None:
    """``X-HubSpot-Signature-v3`` = base64 HMAC-SHA256(method + uri + body + timestamp), with
    ``X-HubSpot-Request-Timestamp`` (ms) at most 5 minutes old."""
    name = "x-hubspot-signature-v3"
    if not signature or not timestamp or not timestamp.strip().isdigit():
        raise BadSignature(name, "missing signature or timestamp header")
    signed = method.encode() + hubspot_uri(url).encode() + body + timestamp.strip().encode()
    expected = base64.b64encode(_mac(secret, signed)).decode()
    if not hmac.compare_digest(expected, signature.strip()):
        raise BadSignature(name, "does not match the app's client secret")
    within("x-hubspot-request-timestamp", int(timestamp), now_ms, tolerance_s)


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key, as its settings page shows it (base64 DER) or as PEM."""
    raw = text.strip()
    if raw.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(raw.encode())
    else:
        key = serialization.load_der_public_key(base64.b64decode(raw))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return key


def sendgrid(
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    key: ec.EllipticCurvePublicKey,
    *,
    now_ms: int,
    tolerance_s: int,
) -> None:
    """``X-Twilio-Email-Event-Webhook-Signature``: base64 DER ECDSA (P-256, SHA-256) over
    ``timestamp + body``, ``X-Twilio-Email-Event-Webhook-Timestamp`` in unix seconds."""
    name = "x-twilio-email-event-webhook-signature"
    if not signature or not timestamp or not timestamp.strip().isdigit():
        raise BadSignature(name, "missing signature or timestamp header")
    try:
        key.verify(
            base64.b64decode(signature.strip()),
            timestamp.strip().encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise BadSignature(name, "does not verify with the verification key") from None
    within(name.replace("signature", "timestamp"), int(timestamp) * 1000, now_ms, tolerance_s)


def generic(signature: str | None, header: str, body: bytes, secret: str) -> None:
    """A hex HMAC-SHA256 of the body, bare or as ``sha256=<hex>`` (GitHub's form)."""
    value = (signature or "").strip()
    value = value.split("=", 1)[1] if value.startswith("sha256=") else value
    if not value or not hmac.compare_digest(_mac(secret, body).hex(), value.lower()):
        raise BadSignature(header, "missing, or not the HMAC-SHA256 of the body with the secret")


def same_secret(given: str | None, secret: str, where: str) -> None:
    """A secret carried in the URL (Mailchimp), compared in constant time."""
    if not given or not hmac.compare_digest(given.encode(), secret.encode()):
        raise BadSignature(where, "missing or wrong secret")
