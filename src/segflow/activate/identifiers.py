"""Normalised, SHA-256-hashed identifiers for ad platforms' customer-list matching.

Emails: trimmed and lower-cased (the rule Google Customer Match, Meta Custom Audiences,
TikTok and LinkedIn all specify). Phones: E.164 (``+`` country code and digits only, no
spaces, dashes, brackets or leading trunk zero). The hash is the lowercase hex SHA-256 of
the normalised UTF-8 string.

>>> normalize_email("  John.Doe@Example.COM ")
'john.doe@example.com'
>>> normalize_phone("+1 (415) 555-0123")
'+14155550123'
>>> normalize_phone("0044 20 7946 0958")
'+442079460958'
>>> hash_email("John.Doe@example.com") == sha256_hex("john.doe@example.com")
True
"""

from __future__ import annotations

import hashlib
import re

_NON_DIGITS = re.compile(r"[^0-9]")
EMAIL_TYPES = frozenset({"email", "email_address"})
PHONE_TYPES = frozenset({"phone", "phone_number", "mobile"})


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalize_email(raw: str) -> str:
    return raw.strip().lower()


def normalize_phone(raw: str, default_country_code: str | None = None) -> str:
    """E.164 form of ``raw``; a number without ``+``/``00`` gets ``default_country_code``.

    >>> normalize_phone("(415) 555-0123", default_country_code="1")
    '+14155550123'
    """
    text = raw.strip()
    digits = _NON_DIGITS.sub("", text)
    if text.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if default_country_code:
        return "+" + default_country_code.lstrip("+") + digits.lstrip("0")
    return "+" + digits


def hash_email(raw: str) -> str:
    return sha256_hex(normalize_email(raw))


def hash_phone(raw: str, default_country_code: str | None = None) -> str:
    return sha256_hex(normalize_phone(raw, default_country_code))


def hashed_identifier(id_type: str, value: str) -> tuple[str, str]:
    """``(type, value)`` with emails and phones replaced by their hashed form.

    >>> hashed_identifier("email", "A@B.co")[0]
    'email_sha256'
    >>> hashed_identifier("user_id", "u1")
    ('user_id', 'u1')
    """
    kind = id_type.lower()
    if kind in EMAIL_TYPES:
        return "email_sha256", hash_email(value)
    if kind in PHONE_TYPES:
        return "phone_sha256", hash_phone(value)
    return id_type, value
