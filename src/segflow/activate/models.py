"""The activation catalogue: destinations, subscriptions, deliveries and their stats.

>>> d = Destination(name="crm", kind="webhook", url="https://crm.example/hook")
>>> d.payload_format, d.identifiers
('segflow', 'raw')
>>> Subscription(destination="crm", segment="dormant").kinds
('entered', 'exited')
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DestinationKind = Literal["webhook", "file"]
PayloadFormat = Literal["segflow", "segment_track", "segment_identify"]
IdentifierMode = Literal["raw", "hashed"]
PhoneFormat = Literal["e164", "digits"]
ChangeKind = Literal["entered", "exited", "score_changed"]
DeliveryKind = Literal[
    "entered", "exited", "deleted", "score_changed"
]  # deleted: a deletion notice
SCORE_PREFIX = "score:"
"""A subscription to ``score:MODEL`` (kind ``score_changed``) receives the model's live score
changes (``segflow.spec.ScoreChanged``) instead of a segment's memberships."""
DeliveryStatus = Literal["pending", "delivered", "dead", "skipped"]
"""``skipped``: a replayed dead letter superseded by a later delivered change of its segment."""


class Destination(msgspec.Struct, frozen=True, kw_only=True):
    """Where membership changes go, and how they are shaped and paced.

    ``url`` is for webhooks, ``directory`` for file destinations. Times are milliseconds.
    ``deletion_notice``: when a deletion regulation erases a profile this destination was
    told about, it also receives a ``profile.deleted`` notice after the ``exited`` changes
    (docs/privacy.md).
    """

    name: str
    kind: DestinationKind = "webhook"
    url: str | None = None
    directory: str | None = None
    payload_format: PayloadFormat = "segflow"
    identifiers: IdentifierMode = "raw"
    phone_format: PhoneFormat = "e164"  # hashed phones: "+<digits>" (Google) or digits (Meta)
    phone_country_code: str | None = None  # for phone numbers written without one
    consent_purpose: str | None = None
    timeout_ms: int = 10_000
    horizon_ms: int = 24 * 3_600_000
    backoff_base_ms: int = 1_000
    backoff_max_ms: int = 3_600_000
    concurrency: int = 4
    rate_limit_per_s: float | None = None
    batch_max: int = 1
    batch_wait_ms: int = 0
    file_period_ms: int = 3_600_000
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    enabled: bool = True
    disabled_reason: str | None = None
    deletion_notice: bool = False
    created_ms: int = 0
    updated_ms: int = 0


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """Connects a destination to a segment: which change kinds, which traits."""

    destination: str
    segment: str
    kinds: tuple[ChangeKind, ...] = ("entered", "exited")
    traits: tuple[str, ...] = ()
    created_ms: int = 0


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One change queued for one destination. ``webhook_id`` is its idempotency key."""

    id: int
    destination: str
    profile_id: str
    webhook_id: str
    segment: str
    kind: DeliveryKind
    sequence: int
    at_ms: int
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    created_ms: int
    first_attempt_ms: int | None = None
    next_attempt_ms: int = 0
    last_status: int | None = None
    last_error: str | None = None
    finished_ms: int | None = None
    batch_key: str | None = None


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One try of one delivery: the HTTP status (or ``None``), the error, the latency."""

    delivery_id: int
    number: int
    at_ms: int
    status: int | None
    error: str | None
    latency_ms: float
    next_attempt_ms: int | None = None


class DestinationStats(msgspec.Struct, frozen=True, kw_only=True):
    pending: int
    delivered: int
    dead: int
    skipped: int
    oldest_pending_ms: int | None
    last_attempt_ms: int | None
    last_status: int | None


class SecretInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A signing secret as shown after creation (a fingerprint, never the secret) and its
    lifetime."""

    secret_id: int
    fingerprint: str
    created_ms: int
    expires_ms: int | None
