"""``/api/v1/tokens``: create, list and revoke API tokens (admin only, every change audited).

=======  ============================  =====  ==============================================
GET      /api/v1/tokens                admin  every token: id, role, name, created, revoked
POST     /api/v1/tokens                admin  ``{"role", "name"?}`` -> 201 with the token, once
DELETE   /api/v1/tokens/{token_id}     admin  revoke (its console sessions end at once)
=======  ============================  =====  ==============================================

The plain token is in the answer to ``POST`` and nowhere else: the store keeps its SHA-256.

>>> import tempfile, os
>>> from segflow.api.auth import TokenStore
>>> store = TokenStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> info, token = issue(store, None, "ops", {"role": "read", "name": "grafana"})
>>> (info.role, info.name, token.startswith("sft_" + info.token_id + "_"))
('read', 'grafana', True)
>>> revoke(store, None, "ops", info.token_id).revoked_ms is not None
True
>>> store.close()
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from segflow.api.auth import ROLES, Authorize, TokenInfo, TokenStore
from segflow.api.common import actor, endpoint
from segflow.catalog.audit import AuditLog
from segflow.errors import NotFoundError, ValidationError

MAX_NAME = 100


def issue(
    store: TokenStore, audit: AuditLog | None, who: str, body: dict[str, Any]
) -> tuple[TokenInfo, str]:
    """A new token from ``{"role", "name"?}``, recorded in ``audit`` (never its secret)."""
    role, name = body.get("role"), body.get("name", "")
    if role not in ROLES:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)}")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise ValidationError("name", f"must be text of at most {MAX_NAME} characters")
    info, token = store.issue(role, name=name.strip())
    if audit is not None:
        audit.record(who, "token.create", info.token_id, None, msgspec.to_builtins(info))
    return info, token


def revoke(store: TokenStore, audit: AuditLog | None, who: str, token_id: str) -> TokenInfo:
    """Revoke an active token; :class:`NotFoundError` when there is none with that id."""
    before = store.get(token_id)
    if before is None or before.revoked_ms is not None or not store.revoke(token_id):
        raise NotFoundError(f"no active token {token_id}", details={"token_id": token_id})
    after = store.get(token_id)
    assert after is not None
    if audit is not None:
        audit.record(
            who, "token.revoke", token_id, msgspec.to_builtins(before), msgspec.to_builtins(after)
        )
    return after


def token_routes(
    store: TokenStore, authorize: Authorize, audit: AuditLog | None = None
) -> list[Route]:
    """The token routes over ``store``; changes are recorded in ``audit``."""

    def listing(request: Request, body: dict[str, Any]) -> Any:
        return {"tokens": store.list()}

    def create(request: Request, body: dict[str, Any]) -> Any:
        info, token = issue(store, audit, actor(request), body)
        return {"token": token, "info": info}

    def delete(request: Request, body: dict[str, Any]) -> Any:
        return {"revoked": revoke(store, audit, actor(request), request.path_params["token_id"])}

    base = "/api/v1/tokens"
    return [
        Route(base, endpoint(authorize, "admin", listing), methods=["GET"]),
        Route(base, endpoint(authorize, "admin", create, status=201), methods=["POST"]),
        Route(base + "/{token_id}", endpoint(authorize, "admin", delete), methods=["DELETE"]),
    ]
