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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.api.common import actor, answer, json_body, query_int
from segflow.audit import AuditLog
from segflow.catalogdb import CatalogTarget
from segflow.clock import Clock
from segflow.errors import ValidationError
from segflow.ml.jobs import AttributeSink
from segflow.ml.registry import ModelSpec, Registry

Authorize = Callable[[Request, str], Awaitable[None]]
JOBS = ("train", "score", "cluster", "ltv")


async def allow_all(request: Request, role: str) -> None:
    """An authorizer that lets everything through (tests, single-user local runs)."""
    return None


@dataclass(frozen=True)
class ModelsDeps:
    connect: Callable[[], duckdb.DuckDBPyConnection]
    clock: Clock
    catalog_path: CatalogTarget | None = None  # catalog.sqlite or the shared catalog
    authorize: Authorize = allow_all
    sink: AttributeSink | None = None  # the processor: scores of on-demand runs reach profiles
    audit: AuditLog | None = None  # definitions, renames and saved clusters are recorded here

    def record(self, request: Request, action: str, target: str, before: Any, after: Any) -> None:
        if self.audit is not None:
            self.audit.record(actor(request), action, target, before, after)


def _handler(
    deps: ModelsDeps,
    role: str,
    fn: Callable[[Registry, Request, dict[str, Any]], Any],
    failure: str = "",
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        async def work() -> Any:
            await deps.authorize(request, role)
            body = await json_body(request)

            def call() -> Any:
                con = deps.connect()
                try:
                    return fn(Registry(con), request, body)
                finally:
                    con.close()

            return await run_in_threadpool(call)

        return await answer(request, work, failure=failure)

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
    # the newest training's verdict: a model no better than its baseline is not used
    spec = reg.get_model(name)
    return {"spec": spec, "runs": reg.runs(name, 10), "warning": reg.training_warning(name)}


def _runs(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
    name = request.path_params["name"]
    reg.get_model(name)
    return {"runs": reg.runs(name, query_int(request, "limit", 50, low=1, high=1000))}


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
        before = next((m for m in reg.list_models() if m.name == spec.name), None)
        reg.put_model(spec, now_ms=deps.clock.now_ms())
        deps.record(request, "model.put", spec.name, msgspec.to_builtins(before),
                    msgspec.to_builtins(spec))  # fmt: skip
        return {"spec": spec}

    def run(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
        from segflow.ml.jobs import JobContext, run_job

        job = body.get("job")
        if job is not None and job not in JOBS:
            raise ValidationError("job", f"must be one of {', '.join(JOBS)} (or left out)")
        ctx = JobContext(con=reg.con, clock=deps.clock, sink=deps.sink)
        return {"run": run_job(ctx, request.path_params["name"], job)}

    def rename(reg: Registry, request: Request, body: dict[str, Any]) -> Any:
        new = body.get("name")
        if not isinstance(new, str) or not new.strip():
            raise ValidationError("name", "a non-empty string is required")
        model, cluster = request.path_params["name"], int(request.path_params["cluster"])
        before = reg.rename_cluster(
            model, cluster, new.strip(), sink=deps.sink, now_ms=deps.clock.now_ms()
        )
        deps.record(request, "cluster.rename", f"{model}/{cluster}", before, new.strip())
        out: dict[str, Any] = {"cluster": cluster, "name": new.strip(), "previous_name": before}
        if deps.catalog_path is not None:
            from segflow.ml.segments import rules_naming_cluster

            # rules on the old name no longer match it (rules on the id, as saved clusters are, do)
            out["segments_naming_previous"] = rules_naming_cluster(deps.catalog_path, model, before)
        return out

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
        target = f"{request.path_params['name']}/{request.path_params['cluster']}"
        deps.record(request, "cluster.save_as_segment", target, None,
                    {"segment": segment, "version": d.version, "rule": d.rule})  # fmt: skip
        return {"segment": segment, "version": d.version, "rule": d.rule}

    base = "/api/v1/models"
    return [
        Route(base, _handler(deps, "read", _list), methods=["GET"]),
        Route(base + "/{name}", _handler(deps, "read", _show), methods=["GET"]),
        Route(base + "/{name}", _handler(deps, "editor", put), methods=["PUT"]),
        Route(base + "/{name}/runs", _handler(deps, "read", _runs), methods=["GET"]),
        # a job that crashed is recorded as a failed run and answered as job_failed (500)
        Route(base + "/{name}/runs", _handler(deps, "editor", run, "job_failed"), methods=["POST"]),
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
