"""The admin API's OpenAPI 3.1 document (``/api/v1/openapi.json``), built from the app's own
routes so the two cannot drift apart: every route must have an entry in :data:`OPERATIONS` (a
test checks both ways). ``segflow.api.docs`` renders it as the page at ``/api/v1/docs``.

>>> doc = document([("GET", "/api/v1/health")])
>>> doc["paths"]["/api/v1/health"]["get"]["summary"]
'Liveness (no token)'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from segflow import __version__

# (method, path) -> (role or None, summary, JSON body fields or None)
OPERATIONS: dict[tuple[str, str], tuple[str | None, str, str | None]] = {
    ("GET", "/api/v1/health"): (None, "Liveness (no token)", None),
    ("GET", "/api/v1/status"): ("read", "Lag of each part and the delivery backlog", None),
    ("GET", "/api/v1/audit"): ("admin", "Configuration changes, newest first (?limit&action&target)", None),
    ("POST", "/api/v1/backups"): ("admin", "Write a consistent backup of the data directory to a new directory on the server", "path"),
    ("GET", "/api/v1/openapi.json"): (None, "This document", None),
    ("GET", "/api/v1/docs"): (None, "This document as a page where each route can be tried", None),
    ("GET", "/api/v1/tokens"): ("admin", "Every API token (never a secret)", None),
    ("POST", "/api/v1/tokens"): ("admin", "Create a token; the answer holds it, once", "role, name"),
    ("DELETE", "/api/v1/tokens/{token_id}"): ("admin", "Revoke a token (its console sessions end)", None),
    ("GET", "/api/v1/sources"): ("read", "Every source (write keys are never shown again)", None),
    ("POST", "/api/v1/sources"): ("admin", "Create a source; the answer holds its write key, once", "name, config"),
    ("GET", "/api/v1/sources/{name}"): ("read", "A source and its tracking-plan violations", None),
    ("PUT", "/api/v1/sources/{name}/config"): ("admin", "Replace its event-name rules and tracking plan", "event_names, tracking_plan"),
    ("PUT", "/api/v1/sources/{name}/webhook"): ("admin", "Take a vendor's webhooks (docs/webhooks.md); the secret is stored encrypted", "vendor, secret, public_key, organization_id, mapping"),
    ("DELETE", "/api/v1/sources/{name}/webhook"): ("admin", "Stop taking vendor webhooks", None),
    ("GET", "/api/v1/sources/{name}/dead-letters"): ("admin", "Events the collector refused, with field and reason (?limit)", None),
    ("GET", "/api/v1/syncs"): ("read", "Every pulled sync: definition, cursors, progress, last error", None),
    ("POST", "/api/v1/syncs"): ("admin", "Add a pulled sync (its credential is stored encrypted, never shown)", "name, vendor, source, credential, base_url, objects, interval_s"),
    ("GET", "/api/v1/syncs/{name}"): ("read", "A pulled sync with its cursors and progress", None),
    ("DELETE", "/api/v1/syncs/{name}"): ("admin", "Remove a pulled sync (the events it stored stay)", None),
    ("POST", "/api/v1/syncs/{name}/run"): ("admin", "Run a pulled sync now (serve's schedule picks it up)", None),
    ("GET", "/api/v1/profiles/{ident}"): ("read", "A profile by any identifier (type:value)", None),
    ("GET", "/api/v1/profiles/{ident}/events"): ("read", "Its timeline, newest first (?limit&before)", None),
    ("GET", "/api/v1/profiles/{ident}/segments"): ("read", "Current memberships and computed traits", None),
    ("GET", "/api/v1/profiles/{ident}/segments/history"): ("read", "When it entered and left each segment: valid (by the rules over event time) and recorded (when segflow committed it) intervals", None),
    ("GET", "/api/v1/profiles/{ident}/scores"): ("read", "Scores with the reasons behind each, and clusters", None),
    ("GET", "/api/v1/profiles/{ident}/traits/history"): ("read", "Every trait change (key, value, event time, message), newest first", None),
    ("GET", "/api/v1/profiles/{ident}/merges"): ("read", "Why these identifiers are one person", None),
    ("POST", "/api/v1/profiles/{ident}/split"): ("admin", "Split identifiers off into a new profile", "identifiers"),
    ("GET", "/api/v1/segments"): ("read", "Every segment with its rule, version and size", None),
    ("POST", "/api/v1/segments"): ("editor", "Create or edit a segment (every error, with line and column)", "name, rule, description"),
    ("POST", "/api/v1/segments/check"): ("read", "Check a rule as you type (nothing stored)", "rule, trait"),
    ("POST", "/api/v1/segments/preview"): ("read", "Count and sample of a rule, as SQL on the warehouse", "rule, at_ms, sample"),
    ("GET", "/api/v1/segments/{name}"): ("read", "A segment: current version, size, history", None),
    ("PUT", "/api/v1/segments/{name}"): ("editor", "A new version of a segment (backfilled)", "rule, description"),
    ("DELETE", "/api/v1/segments/{name}"): ("admin", "Delete a segment (history kept)", None),
    ("GET", "/api/v1/segments/{name}/sizes"): ("read", "Its size at each of the last ?days=30 days, in valid time (the SQL at each instant); &as_recorded=true: recorded intervals", None),
    ("GET", "/api/v1/segments/{name}/members"): ("read", "Members now (?limit&cursor) or at a past time (?at_ms, valid time: the SQL at T; &as_recorded=true: what segflow had recorded)", None),
    ("GET", "/api/v1/traits"): ("read", "Every computed trait", None),
    ("POST", "/api/v1/traits"): ("editor", "Create or edit a computed trait", "name, rule, description"),
    ("GET", "/api/v1/traits/{name}"): ("read", "A computed trait and its history", None),
    ("PUT", "/api/v1/traits/{name}"): ("editor", "A new version of a computed trait", "rule, description"),
    ("DELETE", "/api/v1/traits/{name}"): ("admin", "Delete a computed trait", None),
    ("GET", "/api/v1/destinations"): ("read", "Every destination", None),
    ("POST", "/api/v1/destinations"): ("editor", "Create a destination (returns its signing secret once)", "name, kind, url, directory, subscriptions, ..."),
    ("GET", "/api/v1/destinations/{name}"): ("read", "A destination with delivery stats and notices", None),
    ("PATCH", "/api/v1/destinations/{name}"): ("editor", "Change a destination (resync: re-send members)", "any destination field, resync"),
    ("DELETE", "/api/v1/destinations/{name}"): ("admin", "Delete a destination", None),
    ("POST", "/api/v1/destinations/{name}/test"): ("editor", "Send a test delivery", None),
    ("POST", "/api/v1/destinations/{name}/secrets"): ("editor", "Rotate the signing secret (both sign during the overlap)", None),
    ("PUT", "/api/v1/destinations/{name}/subscriptions/{segment}"): ("editor", "Subscribe to a segment", "kinds, traits, initial_sync"),
    ("DELETE", "/api/v1/destinations/{name}/subscriptions/{segment}"): ("editor", "Unsubscribe", None),
    ("POST", "/api/v1/destinations/{name}/snapshots/{segment}"): ("editor", "Write the segment's members to a file destination (Parquet, CSV)", None),
    ("GET", "/api/v1/destinations/{name}/deliveries"): ("read", "The delivery log (?status&limit&since_ms)", None),
    ("GET", "/api/v1/destinations/{name}/dead-letters"): ("read", "Dead letters with every attempt", None),
    ("POST", "/api/v1/destinations/{name}/dead-letters/replay"): ("editor", "Replay dead letters", "since_ms, ids"),
    ("GET", "/api/v1/models"): ("read", "Every model with its last run", None),
    ("GET", "/api/v1/models/{name}"): ("read", "A model and its recent runs", None),
    ("PUT", "/api/v1/models/{name}"): ("editor", "Create or replace a model definition", "kind, target, schedule, ..."),
    ("GET", "/api/v1/models/{name}/runs"): ("read", "Its runs (?limit)", None),
    ("POST", "/api/v1/models/{name}/runs"): ("editor", "Run its job now (scores reach profiles at once)", "job"),
    ("GET", "/api/v1/models/{name}/clusters"): ("read", "Cluster cards and the 2-D projection", None),
    ("PATCH", "/api/v1/models/{name}/clusters/{cluster}"): ("editor", "Rename a cluster", "name"),
    ("POST", "/api/v1/models/{name}/clusters/{cluster}/segment"): ("editor", "Save a cluster as a segment", "segment"),
    ("POST", "/api/v1/regulations"): ("admin", "Delete and/or suppress a person (202: runs in the background)", "type, identifiers"),
    ("GET", "/api/v1/regulations"): ("admin", "Regulations, newest first (?status&limit)", None),
    ("GET", "/api/v1/regulations/{id}"): ("admin", "A regulation: status, step, counts, error", None),
    ("GET", "/api/v1/suppressions"): ("admin", "Suppressed identifiers as keyed hashes (?after&limit)", None),
    ("DELETE", "/api/v1/suppressions/{hash}"): ("admin", "Lift a suppression", None),
}  # fmt: skip

# request bodies worth showing (the docs page pre-fills them)
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/segments"): {"name": "repeat_buyers", "rule": 'did "Order Completed" at least 2 times in last 30 days', "description": ""},
    ("PUT", "/api/v1/segments/{name}"): {"rule": 'did "Order Completed" at least 3 times in last 30 days'},
    ("POST", "/api/v1/segments/check"): {"rule": 'did "Order Completed" in last 30 parsecs'},
    ("POST", "/api/v1/segments/preview"): {"rule": 'did "Order Completed" in last 30 days', "sample": 10},
    ("POST", "/api/v1/traits"): {"name": "orders_30d", "rule": 'count("Order Completed" in last 30 days)'},
    ("PUT", "/api/v1/traits/{name}"): {"rule": 'count("Order Completed" in last 90 days)'},
    ("POST", "/api/v1/profiles/{ident}/split"): {"identifiers": ["anonymous_id:shared-laptop"]},
    ("POST", "/api/v1/tokens"): {"role": "read", "name": "dashboards"},
    ("POST", "/api/v1/sources"): {"name": "ios-app"},
    ("PUT", "/api/v1/sources/{name}/webhook"): {"vendor": "stripe", "secret": "whsec_..."},
    ("PUT", "/api/v1/sources/{name}/config"): {"tracking_plan": {"mode": "flag", "events": {"Order Completed": {"properties": {"revenue": {"type": "number", "required": True}}}}}},
    ("POST", "/api/v1/destinations"): {"name": "crm", "url": "https://crm.example.com/hooks/segflow", "subscriptions": [{"segment": "repeat_buyers"}]},
    ("PATCH", "/api/v1/destinations/{name}"): {"enabled": True, "resync": False},
    ("PUT", "/api/v1/destinations/{name}/subscriptions/{segment}"): {"kinds": ["entered", "exited"], "traits": ["email"], "initial_sync": True},
    ("POST", "/api/v1/destinations/{name}/dead-letters/replay"): {"since_ms": 0},
    ("PUT", "/api/v1/models/{name}"): {"kind": "propensity", "target": 'performs "Order Completed" within 7 days', "schedule": "daily"},
    ("POST", "/api/v1/models/{name}/runs"): {"job": "train"},
    ("PATCH", "/api/v1/models/{name}/clusters/{cluster}"): {"name": "Big spenders"},
    ("POST", "/api/v1/models/{name}/clusters/{cluster}/segment"): {"segment": "big_spenders"},
    ("POST", "/api/v1/regulations"): {"type": "delete", "identifiers": [{"type": "email", "value": "ann@example.com"}]},
}  # fmt: skip

_TAGS = {"openapi.json": "docs", "health": "status"}
_PARAM = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "details": {
                    "type": "object",
                    "description": "field and reason (bad input), errors (every rule "
                    "diagnostic), request_id (500), ...",
                },
            },
        }
    },
    "example": {
        "error": {
            "code": "validation_error",
            "message": "limit: must be between 1 and 500",
            "details": {"field": "limit", "reason": "must be between 1 and 500"},
        }
    },
}
_ERRORS = {
    "400": "Bad input: details.field and details.reason (details.errors for a rule)",
    "401": "No or bad token (code unauthorized)",
    "403": "The token's role is too low (code forbidden; details.role, details.needs)",
    "404": "No such thing, or no such route (code not_found, ...)",
    "409": "Conflicts with what is stored (code conflict)",
    "413": "The body is over api.max_body_bytes (code payload_too_large; details.limit, "
    "details.allowed)",
    "500": "Unexpected failure (code internal_error, details.request_id)",
    "503": "Busy, retry after Retry-After seconds (code unavailable)",
}


def normalise(path: str) -> str:
    """Starlette's ``{cluster:int}`` as OpenAPI's ``{cluster}``."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _error(status: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/E{status}"}


def _operation(method: str, path: str) -> dict[str, Any]:
    role, summary, body = OPERATIONS[(method, path)]
    statuses = ["400", "500"] + (["401", "403"] if role else [])
    statuses += ["404"] if "{" in path else []
    statuses += ["409"] if method in ("POST", "PUT", "PATCH", "DELETE") else []
    statuses += ["413"] if method in ("POST", "PUT", "PATCH") else []
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path[8:]).strip('_')}",
        "tags": [_TAGS.get(path.split("/")[3], path.split("/")[3])],
        "parameters": [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in _PARAM.findall(path)
        ],
        "responses": {
            "201" if method == "POST" and _creates(path) else "200": {"description": "JSON"},
            **{s: _error(s) for s in sorted(statuses)},
        },
    }
    if role is None:
        op["security"] = []
    else:
        op["description"] = f"Needs a token with role `{role}` or higher."
        op["x-role"] = role
    if body:
        media: dict[str, Any] = {"schema": {"type": "object", "description": body}}
        if (method, path) in EXAMPLES:
            media["example"] = EXAMPLES[(method, path)]
        op["requestBody"] = {"content": {"application/json": media}}
    return op


def _creates(path: str) -> bool:
    return path.count("/") == 3 and path.split("/")[3] in (
        "segments",
        "traits",
        "destinations",
        "tokens",
        "sources",
    )


def document(routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAPI document of ``(method, path)`` pairs (paths as Starlette writes them)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, raw in sorted(routes, key=lambda r: (r[1], r[0])):
        path = normalise(raw)
        paths.setdefault(path, {})[method.lower()] = _operation(method, path)
    responses = {
        f"E{status}": {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, text in _ERRORS.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "segflow admin API",
            "version": __version__,
            "description": 'Every error is `{"error": {"code", "message", "details"}}`; '
            "see docs/api.md.",
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": responses,
        },
        "security": [{"token": []}],
        "paths": paths,
    }
