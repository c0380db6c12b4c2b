"""The identifiers a regulation names, and their keyed hashes.

A request names identifiers as ``{"type": ..., "value": ...}``; types are the identity graph's
(``user_id``, ``anonymous_id``, ``email``, ``group_id`` and the configured external ids; the
Segment spellings ``userId``/``anonymousId``/``groupId`` are accepted). Values are normalised
as the identity graph does (trimmed; emails lower-cased), so a request for ``Ann@Example.COM``
finds ``ann@example.com``.

Suppressions and finished regulations keep only a **keyed hash** of each identifier
(HMAC-SHA256 with a random key made once per data directory), so the suppression list can
answer "is this identifier suppressed?" but cannot be read back as a list of people.

>>> parse_identifiers([{"type": "userId", "value": " u1 "}], ("user_id", "email"))
[Identifier(type='user_id', value='u1')]
>>> len(identifier_hash(b"k", Identifier("email", "a@b.co")))
64
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any

from segflow.errors import ValidationError
from segflow.identity import Identifier, normalise

ALIASES = {"userId": "user_id", "anonymousId": "anonymous_id", "groupId": "group_id"}
MAX_IDENTIFIERS = 100
MAX_VALUE_LENGTH = 1000


def identifier_hash(key: bytes, ident: Identifier) -> str:
    """The keyed hash (hex) stored for ``ident``."""
    return hmac.new(key, str(ident).encode(), hashlib.sha256).hexdigest()


def hashes(key: bytes, idents: Iterable[Identifier]) -> list[str]:
    """:func:`identifier_hash` of each identifier."""
    return [identifier_hash(key, i) for i in idents]


def parse_identifiers(raw: Any, types: Sequence[str]) -> list[Identifier]:
    """Validated, normalised, de-duplicated identifiers of a request (``ValidationError``
    naming the field otherwise)."""
    if not isinstance(raw, list) or not raw:
        raise ValidationError("identifiers", "expected a non-empty list of {type, value}")
    if len(raw) > MAX_IDENTIFIERS:
        raise ValidationError("identifiers", f"at most {MAX_IDENTIFIERS} per regulation")
    out: list[Identifier] = []
    for i, item in enumerate(raw):
        ident = _one(item, f"identifiers[{i}]", types)
        if ident not in out:
            out.append(ident)
    return out


def _one(item: Any, field: str, types: Sequence[str]) -> Identifier:
    if not isinstance(item, dict):
        raise ValidationError(field, "expected an object {type, value}")
    raw_type = item.get("type")
    id_type = ALIASES.get(raw_type, raw_type) if isinstance(raw_type, str) else raw_type
    if not isinstance(id_type, str) or id_type not in types:
        raise ValidationError(f"{field}.type", f"must be one of {', '.join(types)}")
    value = item.get("value")
    if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
        raise ValidationError(f"{field}.value", f"longer than {MAX_VALUE_LENGTH} characters")
    text = normalise(id_type, value)
    if not text:
        raise ValidationError(f"{field}.value", "expected a non-empty string or number")
    return Identifier(id_type, text)
