"""Clusters (the 2-D map coloured by cluster, the cards, rename) and models (runs, metrics, and
for propensity models the calibration and lift charts of the newest trained run's validation).

Both read the model registry in the warehouse (``segflow.ml.registry``). A rename is stored
at once; the cards show the stored names over the ones of the last run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.errors import NotFoundError, SegflowError
from segflow.ml.registry import Registry, RunRecord
from segflow.ui.svg import colour, scatter, xy
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


def lift_points(bins: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Cumulative lift over the share of profiles, best scores first, from the validation's
    calibration bins: at each bin, the positive rate so far over the base rate.

    >>> lift_points([{"bin_low": 0.0, "count": 80, "observed_rate": 0.05},
    ...              {"bin_low": 0.5, "count": 20, "observed_rate": 0.6}])
    [(0.2, 3.75), (1.0, 1.0)]
    """
    total = sum(b["count"] for b in bins)
    positives = sum(b["count"] * b["observed_rate"] for b in bins)
    if not total or not positives:
        return []
    base, seen, hits, out = positives / total, 0, 0.0, []
    for b in sorted(bins, key=lambda b: -b["bin_low"]):
        seen, hits = seen + b["count"], hits + b["count"] * b["observed_rate"]
        out.append((round(seen / total, 4), round(hits / seen / base, 2)))
    return out


def lift_chart(valid: dict[str, Any]) -> list[tuple[float, float]]:
    """The validation's cumulative lift curve (the one ``lift_top_decile`` is the first point
    of); runs stored before it existed fall back to :func:`lift_points` on their bins.

    >>> lift_chart({"lift_curve": [{"share": 0.1, "lift": 3.0}, {"share": 1.0, "lift": 1.0}]})
    [(0.1, 3.0), (1.0, 1.0)]
    """
    curve = valid.get("lift_curve")
    if curve:
        return [(float(pt["share"]), float(pt["lift"])) for pt in curve]
    return lift_points(valid.get("calibration", []))


def _evaluation(runs: list[RunRecord]) -> dict[str, Any] | None:
    """Calibration and lift charts and the headline figures of the newest trained run."""
    run = next((r for r in runs if r.status == "succeeded" and "validation" in r.metrics), None)
    if run is None:
        return None
    valid, base = run.metrics["validation"], run.metrics.get("baseline", {})
    bins = valid.get("calibration", [])
    calibration = [(b["mean_predicted"], b["observed_rate"]) for b in bins]
    top = max([1e-9, *(v for pt in calibration for v in pt)])
    return {
        "run": run,
        "figures": {k: valid.get(k) for k in ("roc_auc", "pr_auc", "lift_top_decile", "base_rate", "n")},
        "baseline_auc": base.get("roc_auc"),
        "calibration": xy([("validation", calibration)], x_label="predicted", y_label="observed",
                          x_max=top, y_max=top, diagonal=True),
        "warning": run.metrics.get("warning"),
        "used_for_scoring": run.metrics.get("used_for_scoring", True),
        "lift": xy([("model", lift_chart(valid))], x_label="share of profiles, best first",
                   y_label="lift", x_max=1.0),
    }  # fmt: skip


def models(console: Console, request: Request, form: Form) -> Response:
    def read(reg: Registry) -> list[dict[str, Any]]:
        out = []
        for s in reg.list_models():
            runs = reg.runs(s.name, 10)
            out.append({"spec": s, "runs": runs, "evaluation": _evaluation(runs)})
        return out

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

    def rename_it(reg: Registry) -> str | None:
        sink, now = console.deps.sink, console.deps.runtime.clock.now_ms()
        return reg.rename_cluster(model, cluster, new, sink=sink, now_ms=now)

    try:
        before = _with_registry(console, rename_it)
    except SegflowError as exc:
        code = 404 if isinstance(exc, NotFoundError) else 400
        return console.render(request, "error.html", code, title="Rename", reason=exc.message)
    console.record(request, "cluster.rename", f"{model}/{cluster}", before, new)
    return redirect(f"/console/clusters?model={model}")


def save_segment(console: Console, request: Request, form: Form) -> Response:
    """Save a cluster as a segment (``cluster id of model M = N``) in one step."""
    from segflow.ml.segments import save_cluster_as_segment

    model, cluster = request.path_params["model"], int(request.path_params["cluster"])
    segment = form.get("segment", "").strip()
    if not segment:
        return console.render(request, "error.html", 400, title="Save", reason="a segment name is needed")  # fmt: skip
    catalog = console.deps.catalog_path
    try:
        saved = _with_registry(
            console, lambda reg: save_cluster_as_segment(reg, catalog, model, cluster, segment)
        )
    except SegflowError as exc:
        code = 404 if isinstance(exc, NotFoundError) else 400
        return console.render(request, "error.html", code, title="Save", reason=exc.message)
    after = {"segment": segment, "version": saved.version, "rule": saved.rule}
    console.record(request, "cluster.save_as_segment", f"{model}/{cluster}", None, after)
    return redirect(f"/console/segments/{segment}")


def routes(console: Console) -> list[Route]:
    return [
        Route("/console/models", console.page("read", models), methods=["GET"]),
        Route("/console/clusters", console.page("read", clusters), methods=["GET"]),
        Route(
            "/console/clusters/{model}/{cluster:int}/rename",
            console.page("editor", rename),
            methods=["POST"],
        ),
        Route(
            "/console/clusters/{model}/{cluster:int}/segment",
            console.page("editor", save_segment),
            methods=["POST"],
        ),
    ]
