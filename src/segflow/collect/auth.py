"""Write keys, as Segment takes them: HTTP Basic with the key as user name and an empty
password (a missing colon is tolerated), or ``writeKey`` in the JSON body.

>>> import base64
>>> basic_user(b"Basic " + base64.b64encode(b"wk_123:"))
'wk_123'
>>> basic_user(b"Basic " + base64.b64encode(b"wk_123"))
'wk_123'
>>> basic_user(b"Bearer abc") is None
True
"""

from __future__ import annotations

import base64
import binascii


def basic_user(authorization: bytes | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header (the write key)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0]
    return user or None
