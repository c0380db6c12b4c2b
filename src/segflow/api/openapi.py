"""The admin API's OpenAPI 3.1 document (``/api/v1/openapi.json``) and a readable page
(``/api/v1/docs``), built from the app's own routes so the two cannot drift apart: every route
must have an entry in :data:`OPERATIONS` (a test checks both ways).

>>> doc = document([("GET", "/api/v1/health")])
>>> doc["paths"]["/api/v1/health"]["get"]["summary"]
'Liveness (no token)'
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

from segflow import __version__

# (method, path) -> (role or None, summary, JSON body fields or None)
OPERATIONS: dict[tuple[str, str], tuple[str | None, str, str | None]] = {
    ("GET", "/api/v1/health"): (None, "Liveness (no token)", None),
    ("GET", "/api/v1/status"): ("read", "Lag of each part and the delivery backlog", None),
    ("GET", "/api/v1/audit"): ("admin", "Configuration changes, newest first (?limit&action&target)", None),
    ("GET", "/api/v1/openapi.json"): (None, "This document", None),
    ("GET", "/api/v1/docs"): (None, "This document as a page", None),
    ("GET", "/api/v1/profiles/{ident}"): ("read", "A profile by any identifier (type:value)", None),
    ("GET", "/api/v1/profiles/{ident}/events"): ("read", "Its timeline, newest first (?limit&before)", None),
    ("GET", "/api/v1/profiles/{ident}/segments"): ("read", "Current memberships and computed traits", None),
    ("GET", "/api/v1/profiles/{ident}/segments/history"): ("read", "When it entered and left each segment", None),
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
    ("DELETE", "/api/v1/segments/{name}"): ("editor", "Delete a segment (history kept)", None),
    ("GET", "/api/v1/segments/{name}/members"): ("read", "Members now (?limit&cursor) or at a past time (?at_ms)", None),
    ("GET", "/api/v1/traits"): ("read", "Every computed trait", None),
    ("POST", "/api/v1/traits"): ("editor", "Create or edit a computed trait", "name, rule, description"),
    ("GET", "/api/v1/traits/{name}"): ("read", "A computed trait and its history", None),
    ("PUT", "/api/v1/traits/{name}"): ("editor", "A new version of a computed trait", "rule, description"),
    ("DELETE", "/api/v1/traits/{name}"): ("editor", "Delete a computed trait", None),
    ("GET", "/api/v1/destinations"): ("read", "Every destination", None),
    ("POST", "/api/v1/destinations"): ("admin", "Create a destination (returns its signing secret once)", "name, kind, url, directory, subscriptions, ..."),
    ("GET", "/api/v1/destinations/{name}"): ("read", "A destination with delivery stats and notices", None),
    ("PATCH", "/api/v1/destinations/{name}"): ("admin", "Change a destination (resync: re-send members)", "any destination field, resync"),
    ("DELETE", "/api/v1/destinations/{name}"): ("admin", "Delete a destination", None),
    ("POST", "/api/v1/destinations/{name}/test"): ("editor", "Send a test delivery", None),
    ("POST", "/api/v1/destinations/{name}/secrets"): ("admin", "Rotate the signing secret (both sign during the overlap)", None),
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
}  # fmt: skip

_PARAM = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")


def normalise(path: str) -> str:
    """Starlette's ``{cluster:int}`` as OpenAPI's ``{cluster}``."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def document(routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAPI document of ``(method, path)`` pairs (paths as Starlette writes them)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, raw in sorted(routes, key=lambda r: (r[1], r[0])):
        path = normalise(raw)
        role, summary, body = OPERATIONS[(method, path)]
        op: dict[str, Any] = {
            "summary": summary,
            "tags": [path.split("/")[3]],
            "parameters": [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in _PARAM.findall(path)
            ],
            "responses": {
                "200": {"description": "JSON"},
                "400": {"description": "bad input: {code, message, field, reason, details}"},
            },
        }
        if role is None:
            op["security"] = []
        else:
            op["description"] = f"Needs a token with role `{role}` or higher."
            op["responses"]["401"] = {"description": "no or bad token"}
            op["responses"]["403"] = {"description": f"the token's role is below {role}"}
        if body:
            op["requestBody"] = {
                "content": {"application/json": {"schema": {"type": "object", "description": body}}}
            }
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "segflow admin API", "version": __version__},
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"token": []}],
        "paths": paths,
    }


def page(doc: dict[str, Any]) -> str:
    """A self-contained HTML page of the document (no CDN, no JavaScript)."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            role = op.get("description", "no token").removeprefix("Needs a token with role ")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            fields = body.get("schema", {}).get("description", "")
            rows.append(
                f"<tr><td><b>{method.upper()}</b></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{html.escape(fields)}</td>"
                f"<td>{html.escape(role.split(' ')[0].strip('`'))}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>segflow API</title>"
        "<style>body{font:14px system-ui;margin:2em}td{padding:4px 10px;border-bottom:1px solid #ddd}"
        "code{font-size:13px}</style></head><body><h1>segflow admin API</h1>"
        "<p>Send <code>Authorization: Bearer &lt;token&gt;</code> (<code>segflow tokens create</code>). "
        "Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a>.</p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>body</th><th>role</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
