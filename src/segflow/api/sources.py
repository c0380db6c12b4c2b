"""``/api/v1/sources``: sources and their write keys, tracking plans, violations, refused events.

=======  ======================================  =====  ======================================
GET      /api/v1/sources                          read   every source (write keys never shown)
POST     /api/v1/sources                          admin  ``{"name", "config"?}`` -> 201 with the
                                                          write key, once
GET      /api/v1/sources/{name}                   read   a source and its tracking-plan violations
PUT      /api/v1/sources/{name}/config            admin  ``{"event_names"?, "tracking_plan"?}``
PUT      /api/v1/sources/{name}/webhook           admin  ``{"vendor", "secret"?, "public_key"?,
                                                          "organization_id"?, "mapping"?}``
DELETE   /api/v1/sources/{name}/webhook           admin  stop taking vendor webhooks
GET      /api/v1/sources/{name}/dead-letters      admin  events the collector refused (?limit)
=======  ======================================  =====  ======================================

A webhook's vendor secret (docs/webhooks.md) is stored encrypted and never shown again; only
its fingerprint is listed. Mailchimp's URL secret is generated when none is given and shown
once, in the answer.

Write keys are stored hashed (``segflow.collect.catalog``): the answer to ``POST`` is the only
place a key is seen. Refused events are admin-only: their payloads are what the SDK sent,
personal data included.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from segflow.api.auth import Authorize
from segflow.api.common import actor, endpoint, query_int
from segflow.audit import AuditLog
from segflow.collect.catalog import SourceCatalog, SourceConfig
from segflow.collect.webhooks.manage import (
    Encrypter,
    WebhookSettings,
    configure_webhook,
    public_source,
    remove_webhook,
)
from segflow.errors import ValidationError
from segflow.log.base import DeadLetter


def _config(raw: Any) -> SourceConfig:
    if isinstance(raw, dict) and raw.get("webhook") is not None:
        raise ValidationError(
            "webhook", "set with PUT /api/v1/sources/{name}/webhook (its secret is encrypted there)"
        )
    try:
        return msgspec.convert(raw if raw is not None else {}, SourceConfig)
    except msgspec.ValidationError as exc:
        raise ValidationError("config", str(exc)) from None


def webhook_settings(raw: Any) -> WebhookSettings:
    """A webhook's settings from a request body, or a 400 naming the field."""
    try:
        return msgspec.convert(raw, WebhookSettings)
    except msgspec.ValidationError as exc:
        raise ValidationError("webhook", str(exc)) from None


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A refused event with its payload as text (the first 2,000 bytes)."""
    out: dict[str, Any] = msgspec.to_builtins(letter)
    out["payload"] = letter.payload[:2000].decode("utf-8", "replace")
    return out


def source_routes(
    catalog: SourceCatalog,
    dead_letters: Any,
    authorize: Authorize,
    audit: AuditLog | None = None,
    secrets: Encrypter | None = None,
) -> list[Route]:
    """The source routes over ``catalog``; ``dead_letters(source_id=, limit=)`` reads the
    log's refused events; ``secrets`` encrypts webhook secrets. Changes are recorded in
    ``audit``."""

    def record(request: Request, action: str, name: str, before: Any, after: Any) -> None:
        if audit is not None:
            audit.record(actor(request), action, name, before, msgspec.to_builtins(after))

    def listing(request: Request, body: dict[str, Any]) -> Any:
        return {"sources": [public_source(s) for s in catalog.list()]}

    def create(request: Request, body: dict[str, Any]) -> Any:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("name", "a non-empty string is required")
        source, key = catalog.create(name.strip(), _config(body.get("config")))
        record(request, "source.create", source.name, None, source)
        return {"source": public_source(source), "write_key": key}

    def show(request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        source = public_source(catalog.get(name))
        return {"source": source, "violations": catalog.violations(name)}

    def configure(request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        old = catalog.get(name)
        new = msgspec.structs.replace(_config(body), webhook=old.config.webhook)  # kept
        source = catalog.configure(name, new)
        shown = public_source(source)
        record(request, "source.configure", name, public_source(old)["config"], shown["config"])
        return {"source": shown}

    def webhook(request: Request, body: dict[str, Any]) -> Any:
        if secrets is None:
            raise ValidationError("secret", "this server has no secrets key")
        name = request.path_params["name"]
        source, made = configure_webhook(catalog, name, webhook_settings(body), secrets)
        shown = public_source(source)
        record(request, "source.webhook", name, None, shown)
        return {"source": shown, **({"secret": made} if made else {})}

    def unhook(request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        source = remove_webhook(catalog, name)
        record(request, "source.webhook.delete", name, None, public_source(source))
        return {"source": public_source(source)}

    def refused(request: Request, body: dict[str, Any]) -> Any:
        source = catalog.get(request.path_params["name"])
        limit = query_int(request, "limit", 100, low=1, high=1000)
        found = dead_letters(source_id=source.id, limit=limit)
        return {"dead_letters": [dead_letter_json(d) for d in found]}

    base = "/api/v1/sources"
    return [
        Route(base, endpoint(authorize, "read", listing), methods=["GET"]),
        Route(base, endpoint(authorize, "admin", create, status=201), methods=["POST"]),
        Route(base + "/{name}", endpoint(authorize, "read", show), methods=["GET"]),
        Route(base + "/{name}/config", endpoint(authorize, "admin", configure), methods=["PUT"]),
        Route(base + "/{name}/webhook", endpoint(authorize, "admin", webhook), methods=["PUT"]),
        Route(base + "/{name}/webhook", endpoint(authorize, "admin", unhook), methods=["DELETE"]),
        Route(
            base + "/{name}/dead-letters", endpoint(authorize, "admin", refused), methods=["GET"]
        ),
    ]
