"""``/api/v1/models``: the model registry, job runs, clusters (rename, save as segment).

Built from explicit dependencies (:class:`ModelsDeps`): a function opening a cursor on the
warehouse, a clock, the catalog path, and an ``authorize(request, role)`` coroutine (the
token/role check of ``segflow.api.auth``) that raises to refuse.

=======  ==============================================  =====
GET      /api/v1/models                                   read
GET      /api/v1/models/{name}                            read
PUT      /api/v1/models/{name}                            editor
GET      /api/v1/models/{name}/runs                       read
POST     /api/v1/models/{name}/runs  ``{"job": ...}``      editor
GET      /api/v1/models/{name}/clusters                   read
PATCH    /api/v1/models/{name}/clusters/{id} ``{"name"}``  editor
POST     /api/v1/models/{name}/clusters/{id}/segment      editor
=======  ==============================================  =====
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from segflow.api.common import json_body
from segflow.clock import Clock
from segflow.errors import (
    ConflictError,
    NotFoundError,
    SegflowError,
    TransientError,
    ValidationError,
)
from segflow.ml.jobs import AttributeSink
from segflow.ml.registry import ModelSpec, Registry

log = logging.getLogger(__name__)

Authorize = Callable[[Request, str], Awaitable[None]]


async def allow_all(request: Request, role: str) -> None:
    """An authorizer that lets everything through (tests, single-user local runs)."""
    return None


@dataclass(frozen=True)
class ModelsDeps:
    connect: Callable[[], duckdb.DuckDBPyConnection]
    clock: Clock
    catalog_path: Path | None = None
    authorize: Authorize = allow_all
    sink: AttributeSink | None = None  # the processor: scores of on-demand runs reach profiles


def _status(exc: SegflowError) -> int:
    for kind, status in (
        (ValidationError, 422),
        (NotFoundError, 404),
        (ConflictError, 409),
        (TransientError, 503),
    ):
        if isinstance(exc, kind):
            return status
    return 500 if not exc.code.endswith("error") else 400


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(msgspec.to_builtins(data), status_code=status)


def _handler(
    deps: ModelsDeps, role: str, fn: Callable[[Registry, Request, dict[str, Any]], Any]
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        try:
            await deps.authorize(request, role)
            body = await json_body(request)

            def call() -> Any:
                con = deps.connect()
                try:
                    return fn(Registry(con), request, body)
                finally:
                    con.close()

            return _json(await run_in_threadpool(call))
        except SegflowError as exc:
            return JSONResponse(exc.to_dict(), status_code=_status(exc))
        except HTTPException:
            raise  # 401/403 from authorize, answered by Starlette
        except Exception as exc:  # a job that crashed: recorded as a failed run, said as JSON
            log.exception("model endpoint failed")
            body = {"code": "job_failed", "message": f"{type(exc).__name__}: {exc}", "details": {}}
            return JSONResponse(body, status_code=500)
        except msgspec.DecodeError as exc:
            return JSONResponse(ValidationError("body", str(exc)).to_dict(), status_code=400)

    return endpoint


def _list(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
    return {
        "models": [
            {"spec": s, "last_run": next(iter(reg.runs(s.name, 1)), None)}
            for s in reg.list_models()
        ]
    }


def _show(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
    name = request.path_params["name"]
    return {"spec": reg.get_model(name), "runs": reg.runs(name, 10)}


def _runs(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
    name = request.path_params["name"]
    reg.get_model(name)
    return {"runs": reg.runs(name, int(request.query_params.get("limit", "50")))}


def _clusters(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
    name = request.path_params["name"]
    last = reg.last_run(name, "cluster")
    metrics = last.metrics if last else {}
    return {
        "clusters": metrics.get("cards", []),
        "projection": metrics.get("projection"),
        "changed_share": metrics.get("changed_share"),
        "run_id": last.run_id if last else None,
    }


def build_model_routes(deps: ModelsDeps) -> list[Route]:
    """The routes of ``/api/v1/models``; mount them in the API app."""

    def put(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
        try:
            spec = msgspec.convert({**body, "name": request.path_params["name"]}, ModelSpec)
        except msgspec.ValidationError as exc:
            raise ValidationError("body", str(exc)) from exc
        if spec.kind == "propensity":
            from segflow.ml.targets import parse_target

            parse_target(spec.target or "")
        reg.put_model(spec, now_ms=deps.clock.now_ms())
        return {"spec": spec}

    def run(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
        from segflow.ml.jobs import JobContext, run_job

        ctx = JobContext(con=reg.con, clock=deps.clock, sink=deps.sink)
        return {"run": run_job(ctx, request.path_params["name"], body.get("job"))}

    def rename(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
        new = body.get("name")
        if not isinstance(new, str) or not new.strip():
            raise ValidationError("name", "a non-empty string is required")
        reg.rename_cluster(
            request.path_params["name"], int(request.path_params["cluster"]), new.strip()
        )
        return {"cluster": int(request.path_params["cluster"]), "name": new.strip()}

    def save(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
        from segflow.ml.segments import save_cluster_as_segment

        segment = body.get("segment")
        if not isinstance(segment, str) or not segment:
            raise ValidationError("segment", "a segment name is required")
        if deps.catalog_path is None:
            raise ValidationError("segment", "no catalog configured")
        d = save_cluster_as_segment(
            reg,
            deps.catalog_path,
            request.path_params["name"],
            int(request.path_params["cluster"]),
            segment,
        )
        return {"segment": segment, "version": d.version, "rule": d.rule}

    base = "/api/v1/models"
    return [
        Route(base, _handler(deps, "read", _list), methods=["GET"]),
        Route(base + "/{name}", _handler(deps, "read", _show), methods=["GET"]),
        Route(base + "/{name}", _handler(deps, "editor", put), methods=["PUT"]),
        Route(base + "/{name}/runs", _handler(deps, "read", _runs), methods=["GET"]),
        Route(base + "/{name}/runs", _handler(deps, "editor", run), methods=["POST"]),
        Route(base + "/{name}/clusters", _handler(deps, "read", _clusters), methods=["GET"]),
        Route(
            base + "/{name}/clusters/{cluster:int}",
            _handler(deps, "editor", rename),
            methods=["PATCH"],
        ),
        Route(
            base + "/{name}/clusters/{cluster:int}/segment",
            _handler(deps, "editor", save),
            methods=["POST"],
        ),
    ]
