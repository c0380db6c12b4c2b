"""Normalised, SHA-256-hashed identifiers for ad platforms' customer-list matching.

Emails: trimmed and lower-cased (the rule Google Customer Match, Meta Custom Audiences,
TikTok and LinkedIn all specify). Phones: the country code and the number's digits, with no
spaces, dashes, brackets or trunk zero ("(0)" after the country code, or a leading 0 when a
default country code is added); written ``+<digits>`` (E.164, Google Customer Match's
format: ``PhoneRules("e164")``) or digits only (Meta's and TikTok's customer lists:
``PhoneRules("digits")``). The hash is the lowercase hex SHA-256 of the normalised UTF-8
string, so the two phone formats hash differently: pick the destination's platform's.

>>> normalize_email("  John.Doe@Example.COM ")
'john.doe@example.com'
>>> normalize_phone("+1 (415) 555-0123")
'+14155550123'
>>> normalize_phone("0044 20 7946 0958")
'+442079460958'
>>> normalize_phone("+44 (0)20 7946 0958", digits_only=True)
'442079460958'
>>> hash_email("John.Doe@example.com") == sha256_hex("john.doe@example.com")
True
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, NamedTuple

_NON_DIGITS = re.compile(r"[^0-9]")
EMAIL_TYPES = frozenset({"email", "email_address"})
PHONE_TYPES = frozenset({"phone", "phone_number", "mobile"})


class PhoneRules(NamedTuple):
    """How a destination's platform wants phone numbers before hashing."""

    format: Literal["e164", "digits"] = "e164"
    country_code: str | None = None  # for numbers written without one


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalize_email(raw: str) -> str:
    return raw.strip().lower()


def normalize_phone(
    raw: str, default_country_code: str | None = None, *, digits_only: bool = False
) -> str:
    """E.164 form of ``raw`` (or its digits only); a number without ``+``/``00`` gets
    ``default_country_code``.

    >>> normalize_phone("(415) 555-0123", default_country_code="1")
    '+14155550123'
    >>> normalize_phone("+1 415 555 0123", digits_only=True)
    '14155550123'
    """
    text = raw.strip().replace("(0)", "")
    digits = _NON_DIGITS.sub("", text)
    if text.startswith("+"):
        number = digits
    elif digits.startswith("00"):
        number = digits[2:]
    elif default_country_code:
        number = default_country_code.lstrip("+") + digits.lstrip("0")
    else:
        number = digits
    return number if digits_only else "+" + number


def hash_email(raw: str) -> str:
    return sha256_hex(normalize_email(raw))


def hash_phone(raw: str, rules: PhoneRules = PhoneRules()) -> str:
    digits_only = rules.format == "digits"
    return sha256_hex(normalize_phone(raw, rules.country_code, digits_only=digits_only))


def hashed_identifier(
    id_type: str, value: str, phone: PhoneRules = PhoneRules()
) -> tuple[str, str]:
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
        return "phone_sha256", hash_phone(value, phone)
    return id_type, value
