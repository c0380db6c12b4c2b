"""Errors of the webhook sources (statuses mapped in ``collect.responses``)::

SegflowError
├── collect.exceptions.Unauthorized
│   └── BadSignature            401: the vendor's signature, timestamp or secret is wrong
├── ValidationError
│   └── Unmapped                a payload no adapter maps (a dead letter with this reason)
└── NotFoundError
    └── UnknownVendor           404: no adapter for ``/v1/webhooks/{vendor}``
"""

from __future__ import annotations

from segflow.collect.exceptions import Unauthorized
from segflow.errors import NotFoundError, ValidationError


class BadSignature(Unauthorized):
    """The delivery is not signed by the configured secret, or out of the replay window.

    >>> BadSignature("stripe-signature", "no v1 signature matches").to_dict()["details"]
    {'header': 'stripe-signature', 'reason': 'no v1 signature matches'}
    """

    code = "bad_signature"

    def __init__(self, header: str, reason: str) -> None:
        super().__init__(f"{header}: {reason}", details={"header": header, "reason": reason})


class Unmapped(ValidationError):
    """A payload (or one item of it) that the vendor's adapter does not map to an event."""

    code = "unmapped_payload"


class UnknownVendor(NotFoundError):
    code = "unknown_vendor"
