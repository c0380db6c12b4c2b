"""Webhook sources as code: ``webhooks/NAME.yaml`` beside ``segments/`` for ``segflow apply``.

::

    # webhooks/acme.yaml: the source "acme" (made when missing) takes generic webhooks
    vendor: generic
    secret_env: ACME_WEBHOOK_SECRET   # secrets stay out of files: read from the environment
    mapping:
      items: events
      event: kind
      message_id: id
      email: customer.email

>>> import os, tempfile
>>> from pathlib import Path
>>> from segflow.collect.catalog import SourceCatalog
>>> root = Path(tempfile.mkdtemp()); (root / "webhooks").mkdir()
>>> _ = (root / "webhooks" / "billing.yaml").write_text("vendor: stripe\\nsecret_env: WH\\n")
>>> catalog = SourceCatalog(root / "catalog.sqlite")
>>> [(c.action, c.name, c.vendor) for c in plan(catalog, root, env={"WH": "whsec_1"})]
[('create', 'billing', 'stripe')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from segflow.collect.catalog import SourceCatalog
from segflow.collect.exceptions import UnknownSource
from segflow.collect.webhooks.manage import Encrypter, WebhookSettings, check, configure_webhook
from segflow.errors import ValidationError

FOLDER = "webhooks"


@dataclass(frozen=True)
class WebhookChange:
    """One webhook source's fate: ``create`` (the source too), ``update`` or ``same``."""

    action: str
    name: str
    vendor: str
    settings: WebhookSettings


def read_directory(root: str | Path, env: Mapping[str, str]) -> dict[str, WebhookSettings]:
    """``source name -> settings`` of the files under ``root/webhooks`` (secrets from ``env``)."""
    out: dict[str, WebhookSettings] = {}
    for path in sorted((Path(root) / FOLDER).glob("*.y*ml")):
        try:
            data: Any = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValidationError(str(path), f"not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValidationError(str(path), "a mapping with vendor, secret_env, ... is needed")
        name = str(data.pop("source", None) or path.stem)
        secret_env = data.pop("secret_env", None)
        if "secret" in data:
            raise ValidationError(f"{path}: secret", "keep secrets out of files: use secret_env")
        if secret_env is not None:
            if not env.get(str(secret_env)):
                raise ValidationError(f"{path}: secret_env", f"${secret_env} is not set")
            data["secret"] = env[str(secret_env)]
        try:
            settings = msgspec.convert(data, WebhookSettings)
            check(settings)
        except msgspec.ValidationError as exc:
            raise ValidationError(str(path), str(exc)) from None
        except ValidationError as exc:
            raise ValidationError(f"{path}: {exc.field}", exc.reason) from None
        out[name] = settings
    return out


def _same(catalog: SourceCatalog, name: str, wanted: WebhookSettings) -> bool:
    current = catalog.get(name).config.webhook
    if current is None:
        return False
    fingerprint = hashlib.sha256(wanted.secret.encode()).hexdigest()[:12] if wanted.secret else None
    if wanted.vendor == "mailchimp" and wanted.secret is None:
        fingerprint = current.secret_fingerprint  # a generated URL secret is kept
    return (
        current.vendor,
        current.secret_fingerprint,
        current.public_key,
        current.organization_id,
        current.tolerance_s,
        current.signature_header,
        current.mapping,
    ) == (
        wanted.vendor,
        fingerprint,
        wanted.public_key.strip() if wanted.public_key else None,
        wanted.organization_id.strip() if wanted.organization_id else None,
        wanted.tolerance_s,
        wanted.signature_header.lower(),
        wanted.mapping,
    )


def plan(catalog: SourceCatalog, root: str | Path, env: Mapping[str, str]) -> list[WebhookChange]:
    """What applying ``root/webhooks`` would change."""
    changes = []
    for name, wanted in read_directory(root, env).items():
        try:
            action = "same" if _same(catalog, name, wanted) else "update"
        except UnknownSource:
            action = "create"
        changes.append(WebhookChange(action, name, wanted.vendor, wanted))
    return changes


def apply(
    catalog: SourceCatalog, changes: list[WebhookChange], box: Encrypter
) -> list[tuple[WebhookChange, str | None, str | None]]:
    """Carry out a plan: ``(change, new write key, generated URL secret)`` per change made."""
    done = []
    for change in changes:
        if change.action == "same":
            continue
        key = catalog.create(change.name)[1] if change.action == "create" else None
        _, made = configure_webhook(catalog, change.name, change.settings, box)
        done.append((change, key, made))
    return done
