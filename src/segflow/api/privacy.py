"""``/api/v1/regulations`` and ``/api/v1/suppressions``: deletion and suppression (admin).

======  ===========================================================  ======
POST    /api/v1/regulations  ``{type, identifiers: [{type, value}]}``  admin (202)
GET     /api/v1/regulations?status=&limit=                           admin
GET     /api/v1/regulations/{id}                                     admin
GET     /api/v1/suppressions?after=&limit=                           admin
DELETE  /api/v1/suppressions/{hash}                                  admin
======  ===========================================================  ======

A regulation is answered ``202`` with its id and ``status: pending``; the serve process runs
it (docs/privacy.md). Identifiers are never returned: a regulation and a suppression show
each identifier's type and keyed hash.

>>> import tempfile, os
>>> from segflow.privacy.service import PrivacyService
>>> from segflow.privacy.store import PrivacyStore
>>> from segflow.api.destinations import allow_all
>>> svc = PrivacyService(PrivacyStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite")))
>>> [r.path for r in privacy_routes(svc, allow_all)][:2]
['/api/v1/regulations', '/api/v1/regulations']
>>> svc.store.close()
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from segflow.api.auth import Authorize
from segflow.api.common import actor, endpoint, query_int
from segflow.privacy.service import PrivacyService


def privacy_routes(service: PrivacyService, authorize: Authorize) -> list[Route]:
    """The routes, bound to ``service`` (every one needs the admin role)."""

    def submit(request: Request, body: dict[str, Any]) -> Any:
        return service.submit(body.get("type"), body.get("identifiers"), actor=actor(request))

    def list_(request: Request, body: dict[str, Any]) -> Any:
        limit = query_int(request, "limit", 100, low=1, high=1000)
        status = request.query_params.get("status")
        return {"regulations": service.regulations(limit=limit, status=status)}

    def get(request: Request, body: dict[str, Any]) -> Any:
        return service.get(request.path_params["id"])

    def suppressions(request: Request, body: dict[str, Any]) -> Any:
        limit = query_int(request, "limit", 100, low=1, high=1000)
        after = request.query_params.get("after", "")
        return {"suppressions": service.suppressions(limit=limit, after=after)}

    def unsuppress(request: Request, body: dict[str, Any]) -> Any:
        service.unsuppress(request.path_params["hash"], actor=actor(request))
        return {"deleted": request.path_params["hash"]}

    return [
        Route(
            "/api/v1/regulations",
            endpoint(authorize, "admin", submit, status=202),
            methods=["POST"],
        ),
        Route("/api/v1/regulations", endpoint(authorize, "admin", list_), methods=["GET"]),
        Route("/api/v1/regulations/{id}", endpoint(authorize, "admin", get), methods=["GET"]),
        Route("/api/v1/suppressions", endpoint(authorize, "admin", suppressions), methods=["GET"]),
        Route(
            "/api/v1/suppressions/{hash}",
            endpoint(authorize, "admin", unsuppress),
            methods=["DELETE"],
        ),
    ]
