"""Clusters (the 2-D map coloured by cluster, the cards, rename) and models (runs, metrics).

Both read the model registry in the warehouse (``segflow.ml.registry``). A rename is stored
at once; the cards show the stored names over the ones of the last run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.errors import SegflowError
from segflow.ml.registry import Registry, RunRecord
from segflow.ui.svg import colour, scatter
from segflow.ui.web import Console, Form, redirect

T = TypeVar("T")


def _with_registry(console: Console, fn: Callable[[Registry], T]) -> T:
    con = console.deps.warehouse()
    try:
        return fn(Registry(con))
    finally:
        con.close()


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics worth a table cell (numbers and short text, not cards or maps)."""
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float | str) and len(str(v)) < 40
    }


def models(console: Console, request: Request, form: Form) -> Response:
    def read(reg: Registry) -> list[dict[str, Any]]:
        return [{"spec": s, "runs": reg.runs(s.name, 10)} for s in reg.list_models()]

    found = _with_registry(console, read)
    return console.render(request, "models.html", title="Models", models=found, scalars=_scalars)


def _cluster_view(reg: Registry, name: str) -> dict[str, Any]:
    run: RunRecord | None = reg.last_run(name, "cluster")
    metrics = run.metrics if run else {}
    stored = reg.cluster_names(name)
    cards = [
        {**c, "name": stored.get(int(c["cluster"]), (c["name"], False))[0]}
        for c in metrics.get("cards", [])
    ]
    order = [int(c["cluster"]) for c in cards]
    projection = metrics.get("projection") or {}
    chart = scatter(projection.get("points", []), projection.get("centroids", []), order=order)
    colours = {int(c["cluster"]): colour(i) for i, c in enumerate(cards)}
    return {"run": run, "cards": cards, "chart": chart, "colours": colours}


def clusters(console: Console, request: Request, form: Form) -> Response:
    def read(reg: Registry) -> dict[str, Any]:
        names = [s.name for s in reg.list_models() if s.kind == "cluster"]
        chosen = request.query_params.get("model") or (names[0] if names else "")
        view = _cluster_view(reg, chosen) if chosen in names else None
        return {"names": names, "chosen": chosen, "view": view}

    return console.render(
        request, "clusters.html", title="Clusters", **_with_registry(console, read)
    )


def rename(console: Console, request: Request, form: Form) -> Response:
    model, cluster = request.path_params["model"], int(request.path_params["cluster"])
    new = form.get("name", "").strip()
    if not new:
        return console.render(request, "error.html", 400, title="Rename", reason="a name is needed")
    try:
        _with_registry(console, lambda reg: reg.rename_cluster(model, cluster, new))
    except SegflowError as exc:
        return console.render(request, "error.html", 404, title="Rename", reason=exc.message)
    return redirect(f"/console/clusters?model={model}")


def routes(console: Console) -> list[Route]:
    return [
        Route("/console/models", console.page("read", models), methods=["GET"]),
        Route("/console/clusters", console.page("read", clusters), methods=["GET"]),
        Route(
            "/console/clusters/{model}/{cluster:int}/rename",
            console.page("editor", rename),
            methods=["POST"],
        ),
    ]
