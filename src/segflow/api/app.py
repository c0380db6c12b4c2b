"""The admin API app (``/api/v1``): one Starlette app from the serve process's parts.

=========================  =====================================================
/api/v1/health             liveness, no token
/api/v1/status             the lag of each part (``segflow status`` shows the same)
/api/v1/audit              every configuration change: who, what, when, before/after (admin)
/api/v1/tokens/...         API tokens: create (shown once), list, revoke (admin)
/api/v1/sources/...        sources, write keys (shown once), violations, refused events
/api/v1/openapi.json       the OpenAPI 3.1 document; /api/v1/docs the same as a page
/api/v1/profiles/...       ``segflow.api.profiles``
/api/v1/segments, /traits  ``segflow.api.segments``
/api/v1/destinations/...   ``segflow.api.destinations``
/api/v1/models/...         ``segflow.api.models``
/api/v1/regulations, ...   ``segflow.api.privacy`` (deletion and suppression)
/api/v1/backups            a consistent backup of the data directory (admin; ``segflow.api.backups``)
=========================  =====================================================

Every route but ``/health`` and the docs needs an API token (``segflow tokens create``) with
the route's role; ``segflow.catalog.tokens`` explains the roles. Every error, of any route and of
unknown routes too, has the shape of ``segflow.api.common``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from segflow.activate.secretbox import SecretBox
from segflow.api import docs, openapi
from segflow.api.auth import CachedTokens, authorizer
from segflow.api.backups import backup_routes
from segflow.api.common import endpoint, internal_error, query_int
from segflow.api.destinations import destination_routes
from segflow.api.models import ModelsDeps, build_model_routes
from segflow.api.privacy import privacy_routes
from segflow.api.profiles import profile_routes
from segflow.api.segments import segment_routes
from segflow.api.sources import source_routes
from segflow.api.syncs import sync_routes
from segflow.api.tokens import token_routes
from segflow.serving.deps import ApiDeps
from segflow.serving.errors import http_error
from segflow.serving.limits import BodyLimit
from segflow.serving.snapshots import FigureSource
from segflow.serving.status import status, supervised
from segflow.stream.backfill import Progress
from segflow.syncs.store import report as sync_report


def _freshness(source: FigureSource) -> dict[str, dict[str, Any]]:
    figures = source.figures()
    return figures.freshness if figures else {}


def _progress(source: FigureSource) -> Progress | None:
    figures = source.figures()
    return figures.backfill if figures else None


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _crash(request: Request, exc: Exception) -> Response:
    return internal_error(request, exc)


def build_api(deps: ApiDeps) -> Starlette:
    """The ``/api/v1`` app; routes carry their full paths (mount it with ``KeepPath``)."""
    verified = CachedTokens(deps.tokens)  # a revoked token is refused within CACHE_S
    authorize = authorizer(verified)

    def current_status(request: Request, body: dict[str, Any]) -> Any:
        out = status(deps.runtime.log, deps.activation.store)
        figures = deps.figures.figures()  # None: the pipeline's process is not running
        loader, processor = out["parts"]["warehouse_loader"], out["parts"]["processor"]
        loader["last_error"] = figures.loader_last_error if figures else None
        loader["changes_lag"] = figures.changes_lag if figures else None
        processor["backfilling"] = figures.backfilling if figures else None
        processor["backfill"] = msgspec.to_builtins(figures.backfill) if figures else None
        out["freshness"] = figures.freshness if figures else {}
        out["figures_age_ms"] = figures.age_ms if figures else None
        if deps.syncs is not None:  # progress and last error of each pulled sync
            out["parts"]["syncs"] = sync_report(deps.syncs)
        children = supervised(deps.runtime.settings.data_path)
        if children is not None:  # segflow serve's supervisor (segflow.server.supervisor)
            out["parts"]["supervisor"] = children
        return out

    def audit_log(request: Request, body: dict[str, Any]) -> Any:
        if deps.audit is None:
            return {"entries": []}
        limit = query_int(request, "limit", 100, low=1, high=1000)
        q = request.query_params
        found = deps.audit.list(limit=limit, action=q.get("action"), target=q.get("target"))
        return {"entries": found}

    models = ModelsDeps(
        connect=deps.warehouse,
        clock=deps.runtime.clock,
        catalog_path=deps.catalog_path,
        authorize=authorize,
        sink=deps.sink,
        audit=deps.audit,
    )
    routes: list[BaseRoute] = [
        Route("/api/v1/health", _health, methods=["GET"]),
        Route("/api/v1/status", endpoint(authorize, "read", current_status), methods=["GET"]),
        Route("/api/v1/audit", endpoint(authorize, "admin", audit_log), methods=["GET"]),
        *profile_routes(deps.reader, authorize, splitter=deps.splitter, audit=deps.audit),
        *segment_routes(
            deps.segments,
            deps.reader,
            authorize,
            lambda: _freshness(deps.figures),
            lambda: _progress(deps.figures),
        ),
        *destination_routes(deps.activation, authorize, deps.audit),
        *build_model_routes(models),
        *token_routes(deps.tokens, authorize, deps.audit, revoked=verified.forget),
        *source_routes(
            deps.runtime.catalog,
            deps.runtime.log.dead_letters,
            authorize,
            deps.audit,
            SecretBox.open(
                deps.runtime.settings.data_path, deps.runtime.settings.activate.secrets_key
            ),
        ),
        *(privacy_routes(deps.privacy, authorize) if deps.privacy is not None else ()),
        *(
            sync_routes(deps.syncs, authorize, deps.audit, deps.runtime.clock)
            if deps.syncs is not None
            else ()
        ),
        *backup_routes(
            deps.runtime.settings.data_path,
            deps.loader.lock,
            authorize,
            lock_timeout_s=deps.runtime.settings.warehouse.lock_timeout_s,
            audit=deps.audit,
        ),
    ]
    pairs = [
        (m, r.path)
        for r in routes
        if isinstance(r, Route)
        for m in sorted(r.methods or ())
        if m != "HEAD"
    ]
    pairs += [("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs")]
    doc = openapi.document(pairs)

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(doc)

    html = docs.page(doc)

    async def docs_page(request: Request) -> HTMLResponse:
        return HTMLResponse(html, headers=docs.HEADERS)

    routes += [
        Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/v1/docs", docs_page, methods=["GET"]),
        Mount(docs.ASSETS, StaticFiles(directory=docs.STATIC), name="api-docs"),
    ]

    async def unrouted(request: Request, exc: Exception) -> Response:
        """Starlette's 404 and 405 (with every method the path has, not only the first
        route's) in the error shape."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            path = request.url.path
            allowed = {m for r in routes if isinstance(r, Route) and r.path_regex.match(path)
                       for m in r.methods or ()}  # fmt: skip
            exc.headers = {"Allow": ", ".join(sorted(allowed))}
        return http_error(exc)

    handlers = {HTTPException: unrouted, Exception: _crash}
    limit = Middleware(BodyLimit, max_bytes=deps.runtime.settings.api.max_body_bytes)
    return Starlette(routes=routes, exception_handlers=handlers, middleware=[limit])
