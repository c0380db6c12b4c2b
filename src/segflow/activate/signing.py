"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A secret is ``whsec_`` + base64 of 32 random bytes. The signature header is
``v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>``; during a secret rotation the
header carries one signature per live secret, separated by spaces, as the spec allows.

>>> secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
>>> headers = sign_headers([secret], "msg_1", 1700000000, b'{"a":1}')
>>> headers["webhook-id"], headers["webhook-timestamp"]
('msg_1', '1700000000')
>>> headers["webhook-signature"].startswith("v1,")
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret (shown to the operator once, at creation or rotation).

    >>> new_secret().startswith("whsec_")
    True
    """
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw)


def signature(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``v1,...`` signature of one message with one secret."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(
    secrets: Sequence[str], msg_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with every secret given."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp_s, body) for s in secrets),
    }
