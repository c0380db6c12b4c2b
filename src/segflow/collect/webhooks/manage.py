"""Configuring a source for a vendor's webhooks (the API, the CLI and ``segflow apply`` call this).

>>> import os, tempfile
>>> from segflow.collect.catalog import SourceCatalog
>>> class Plain:  # a stand-in for SecretBox
...     def encrypt(self, secret): return "enc:" + secret
>>> catalog = SourceCatalog(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> _ = catalog.create("payments")
>>> source, shown = configure_webhook(catalog, "payments", WebhookSettings(vendor="stripe",
...     secret="whsec_1"), Plain())
>>> source.config.webhook.encrypted_secret, shown
('enc:whsec_1', None)
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol

import msgspec

from segflow.collect.catalog import Source, SourceCatalog
from segflow.collect.webhooks.config import VENDORS, GenericMapping, WebhookConfig
from segflow.collect.webhooks.signatures import load_public_key
from segflow.errors import ValidationError

NEEDS_SECRET = frozenset({"stripe", "zendesk", "hubspot"})


class Encrypter(Protocol):
    def encrypt(self, secret: str) -> str: ...


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an operator gives: the vendor's secret in clear (stored encrypted)."""

    vendor: str
    secret: str | None = None
    public_key: str | None = None
    organization_id: str | None = None
    tolerance_s: int = 300
    signature_header: str = "x-signature-256"
    mapping: GenericMapping | None = None


def check(settings: WebhookSettings) -> None:
    """Refuse settings a vendor cannot work with (``ValidationError`` naming the field)."""
    vendor = settings.vendor
    if vendor not in VENDORS:
        raise ValidationError("vendor", f"unknown vendor {vendor!r}; known: {', '.join(VENDORS)}")
    if vendor in NEEDS_SECRET and not settings.secret:
        raise ValidationError("secret", f"{vendor} webhooks need the vendor's signing secret")
    if vendor == "sendgrid":
        try:
            load_public_key(settings.public_key or "")
        except (ValueError, TypeError) as exc:
            raise ValidationError("public_key", f"not SendGrid's verification key: {exc}") from None
    if vendor == "salesforce" and len((settings.organization_id or "").strip()) not in (15, 18):
        raise ValidationError("organization_id", "a Salesforce org id (15 or 18 characters)")
    if vendor == "generic":
        mapping = settings.mapping
        if mapping is None:
            raise ValidationError("mapping", "a generic webhook needs a mapping")
        if mapping.type == "track" and not (mapping.event or mapping.event_name):
            raise ValidationError("mapping.event", "a track mapping needs event or event_name")
    if not 1 <= settings.tolerance_s <= 86_400:
        raise ValidationError("tolerance_s", "between 1 and 86400 seconds")


def configure_webhook(
    catalog: SourceCatalog, name: str, settings: WebhookSettings, box: Encrypter
) -> tuple[Source, str | None]:
    """Set a source's webhook; returns it and a generated secret (Mailchimp's URL secret when
    none was given: shown once), else ``None``."""
    check(settings)
    source = catalog.get(name)
    secret, made = settings.secret, None
    kept = source.config.webhook
    if settings.vendor == "mailchimp" and not secret:
        if kept is not None and kept.vendor == "mailchimp" and kept.encrypted_secret:
            secret = None  # the URL secret made before stays
        else:
            secret = made = secrets.token_urlsafe(24)
    else:
        kept = None
    encrypted, fingerprint = (
        (kept.encrypted_secret, kept.secret_fingerprint) if kept else (None, None)
    )
    if secret:
        encrypted = box.encrypt(secret)
        fingerprint = hashlib.sha256(secret.encode()).hexdigest()[:12]
    config = WebhookConfig(
        vendor=settings.vendor,
        encrypted_secret=encrypted,
        secret_fingerprint=fingerprint,
        public_key=settings.public_key.strip() if settings.public_key else None,
        organization_id=settings.organization_id.strip() if settings.organization_id else None,
        tolerance_s=settings.tolerance_s,
        signature_header=settings.signature_header.lower(),
        mapping=settings.mapping,
    )
    updated = catalog.configure(name, msgspec.structs.replace(source.config, webhook=config))
    return updated, made


def remove_webhook(catalog: SourceCatalog, name: str) -> Source:
    """Stop a source taking webhooks."""
    source = catalog.get(name)
    return catalog.configure(name, msgspec.structs.replace(source.config, webhook=None))


def public_source(source: Source) -> dict[str, object]:
    """A source as the API and the CLI show it: the webhook without its encrypted secret."""
    out: dict[str, object] = msgspec.to_builtins(source)
    if source.config.webhook is not None:
        out["config"]["webhook"] = source.config.webhook.public()  # type: ignore[index]
    return out
