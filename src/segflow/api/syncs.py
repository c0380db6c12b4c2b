"""``/api/v1/syncs``: pulled syncs (docs/syncs.md): definitions, credentials, progress, runs.

=======  ===========================  =====  ============================================
GET      /api/v1/syncs                read   every sync: definition, cursors, progress
POST     /api/v1/syncs                admin  ``{"name", "vendor", "source", "credential",
                                             "base_url"?, "objects"?, "interval_s"?}`` -> 201;
                                             ``credential``: a token, or ``{"token",
                                             "email"}`` (Zendesk API token), ``{"token"?,
                                             "client_id", "client_secret",
                                             "refresh_token"}`` (Salesforce refresh flow)
GET      /api/v1/syncs/{name}         read   one sync
DELETE   /api/v1/syncs/{name}         admin  remove it (its cursors and credential too)
POST     /api/v1/syncs/{name}/run     admin  run it now (``serve``'s schedule picks it up)
=======  ===========================  =====  ============================================

The credential is encrypted at rest and never returned: answers show its fingerprint.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from segflow.api.auth import Authorize
from segflow.api.common import actor, endpoint
from segflow.catalog.audit import AuditLog
from segflow.clock import Clock, WallClock
from segflow.syncs.auth import Credential
from segflow.syncs.exceptions import SyncInvalid
from segflow.syncs.store import SyncDefinition, SyncStore


def _field(exc: msgspec.ValidationError, prefix: str = "") -> str:
    path = str(exc).rsplit("at `$.", 1)
    return prefix + path[1].rstrip("`") if len(path) == 2 else prefix.rstrip(".")


def _definition(body: dict[str, Any]) -> tuple[SyncDefinition, str | Credential]:
    fields = {k: v for k, v in body.items() if k != "credential"}
    given = body.get("credential")
    credential: str | Credential
    if isinstance(given, dict):
        try:
            credential = msgspec.convert(given, Credential)
        except msgspec.ValidationError as exc:
            raise SyncInvalid(_field(exc, "credential."), str(exc)) from None
    elif isinstance(given, str) and given:
        credential = given
    else:
        raise SyncInvalid(
            "credential", "the vendor's API token (a non-empty string) or an object (docs/syncs.md)"
        )
    try:
        return msgspec.convert(fields, SyncDefinition), credential
    except msgspec.ValidationError as exc:
        raise SyncInvalid(_field(exc), str(exc)) from None


def sync_routes(
    store: SyncStore,
    authorize: Authorize,
    audit: AuditLog | None = None,
    clock: Clock | None = None,
) -> list[Route]:
    """The sync routes over ``store``; changes are recorded in ``audit``."""
    clock = clock or WallClock()

    def record(request: Request, action: str, name: str, after: Any) -> None:
        if audit is not None:
            audit.record(actor(request), action, name, None, msgspec.to_builtins(after))

    def listing(request: Request, body: dict[str, Any]) -> Any:
        return {"syncs": store.list()}

    def create(request: Request, body: dict[str, Any]) -> Any:
        definition, credential = _definition(body)
        info = store.create(definition, credential, at_ms=clock.now_ms())
        record(request, "sync.create", definition.name, definition)
        return {"sync": info}

    def show(request: Request, body: dict[str, Any]) -> Any:
        return {"sync": store.get(request.path_params["name"])}

    def remove(request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        store.remove(name)
        record(request, "sync.remove", name, None)
        return {"removed": name}

    def run(request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        progress = store.request_run(name, at_ms=clock.now_ms())
        record(request, "sync.run", name, None)
        return {"requested": name, "progress": progress}

    base = "/api/v1/syncs"
    return [
        Route(base, endpoint(authorize, "read", listing), methods=["GET"]),
        Route(base, endpoint(authorize, "admin", create, status=201), methods=["POST"]),
        Route(base + "/{name}", endpoint(authorize, "read", show), methods=["GET"]),
        Route(base + "/{name}", endpoint(authorize, "admin", remove), methods=["DELETE"]),
        Route(
            base + "/{name}/run", endpoint(authorize, "admin", run, status=202), methods=["POST"]
        ),
    ]
