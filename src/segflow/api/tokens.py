"""``/api/v1/tokens``: create, list and revoke API tokens (admin only, every change audited).

=======  ============================  =====  ==============================================
GET      /api/v1/tokens                admin  every token: id, role, name, created, revoked
POST     /api/v1/tokens                admin  ``{"role", "name"?}`` -> 201 with the token, once
DELETE   /api/v1/tokens/{token_id}     admin  revoke (its console sessions end at once)
=======  ============================  =====  ==============================================

The plain token is in the answer to ``POST`` and nowhere else: the store keeps its SHA-256.

>>> import tempfile, os
>>> from segflow.catalog.tokens import TokenStore, issue, revoke
>>> store = TokenStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> info, token = issue(store, None, "ops", {"role": "read", "name": "grafana"})
>>> (info.role, info.name, token.startswith("sft_" + info.token_id + "_"))
('read', 'grafana', True)
>>> revoke(store, None, "ops", info.token_id).revoked_ms is not None
True
>>> store.close()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from segflow.api.auth import Authorize
from segflow.api.common import actor, endpoint
from segflow.catalog.audit import AuditLog
from segflow.catalog.tokens import TokenStore, issue, revoke


def token_routes(
    store: TokenStore,
    authorize: Authorize,
    audit: AuditLog | None = None,
    *,
    revoked: Callable[[str], None] | None = None,
) -> list[Route]:
    """The token routes over ``store``; changes are recorded in ``audit``; ``revoked(id)`` is
    called after a revoke (:meth:`segflow.api.auth.CachedTokens.forget`)."""

    def listing(request: Request, body: dict[str, Any]) -> Any:
        return {"tokens": store.list()}

    def create(request: Request, body: dict[str, Any]) -> Any:
        info, token = issue(store, audit, actor(request), body)
        return {"token": token, "info": info}

    def delete(request: Request, body: dict[str, Any]) -> Any:
        info = revoke(store, audit, actor(request), request.path_params["token_id"])
        if revoked is not None:
            revoked(info.token_id)
        return {"revoked": info}

    base = "/api/v1/tokens"
    return [
        Route(base, endpoint(authorize, "admin", listing), methods=["GET"]),
        Route(base, endpoint(authorize, "admin", create, status=201), methods=["POST"]),
        Route(base + "/{token_id}", endpoint(authorize, "admin", delete), methods=["DELETE"]),
    ]
