"""A webhook source's settings, kept in its source config (``SourceConfig.webhook``).

The vendor's secret is stored encrypted (``encrypted_secret``, a Fernet token made by the
server's secrets key, as destination secrets are) with its fingerprint for listings; the
vendor's public key (SendGrid) and organization id (Salesforce) are not secret and kept as
they are. ``mapping`` is the generic webhook's declarative mapping.

>>> WebhookConfig(vendor="stripe").tolerance_s
300
>>> GenericMapping(event="type").type
'track'
"""

from __future__ import annotations

from typing import Literal

import msgspec

VENDORS = ("stripe", "zendesk", "hubspot", "salesforce", "sendgrid", "mailchimp", "generic")


class GenericMapping(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Paths in a payload (dotted, list indexes as numbers: ``items.0.sku``) -> spec fields.

    ``items``: the path of a list whose elements are mapped one by one (else the whole payload
    is one event). ``event`` is a path, ``event_name`` a fixed name (one of them for track).
    ``message_id``: the vendor's delivery or event id (without it the id is a hash of the
    item, so a retried delivery is still stored once). ``identifiers``: identifier type ->
    path (e.g. ``{"acme_user_id": "user.id"}``). ``properties`` and ``traits``: name -> path.
    """

    type: Literal["track", "identify"] = "track"
    items: str | None = None
    event: str | None = None
    event_name: str | None = None
    message_id: str | None = None
    timestamp: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    email: str | None = None
    identifiers: dict[str, str] = {}
    properties: dict[str, str] = {}
    traits: dict[str, str] = {}


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a source receives one vendor's webhooks (see docs/webhooks.md)."""

    vendor: str
    encrypted_secret: str | None = None
    secret_fingerprint: str | None = None
    public_key: str | None = None  # SendGrid's verification key (base64 DER or PEM)
    organization_id: str | None = None  # Salesforce's org id (15 or 18 characters)
    tolerance_s: int = 300  # the replay window of timestamped signatures
    signature_header: str = "x-signature-256"  # generic: hex HMAC-SHA256 of the body
    mapping: GenericMapping | None = None

    def public(self) -> dict[str, object]:
        """The settings as shown by the API and the CLI (no encrypted secret)."""
        out = msgspec.to_builtins(self)
        out.pop("encrypted_secret", None)
        return out  # type: ignore[no-any-return]
