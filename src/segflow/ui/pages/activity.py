"""Destinations (delivery stats, the delivery log, dead letters with replay) and sources
(write-key sources, tracking-plan violations, events the collector refused)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.errors import SegflowError
from segflow.ui.web import Console, Form, redirect

LOG_ROWS = 50


def destinations(console: Console, request: Request, form: Form) -> Response:
    service = console.deps.activation
    rows = [
        {"d": d, "stats": service.store.stats(d.name), "subs": service.store.subscriptions(d.name)}
        for d in service.list_destinations()
    ]
    return console.render(request, "destinations.html", title="Destinations", rows=rows)


def destination(console: Console, request: Request, form: Form) -> Response:
    service, name = console.deps.activation, request.path_params["name"]
    try:
        shown = service.show(name)
    except SegflowError as exc:
        return console.render(request, "error.html", 404, title="Not found", reason=exc.message)
    status = request.query_params.get("status") or None
    deliveries = service.deliveries(name, status=status, limit=LOG_ROWS)
    dead = service.dead_letters(name, limit=LOG_ROWS)
    people = console.labels(r["delivery"].profile_id for r in [*dead, *deliveries])
    return console.render(
        request, "destination.html", title=f"Destination {name}", name=name, filter_status=status,
        deliveries=deliveries, dead=dead, people=people,
        replayed=request.query_params.get("replayed"), **shown,
    )  # fmt: skip


def replay(console: Console, request: Request, form: Form) -> Response:
    name = request.path_params["name"]
    ids = [int(i) for i in form.get("ids", "").split(",") if i.strip().isdigit()]
    try:
        count = console.deps.activation.replay(name, ids=ids)["replayed"]
    except SegflowError as exc:
        return console.render(request, "error.html", 404, title="Replay", reason=exc.message)
    console.record(request, "destination.replay", name, None, {"ids": ids, "replayed": count})
    return redirect(f"/console/destinations/{name}?replayed={count}")


def sources(console: Console, request: Request, form: Form, **shown: Any) -> Response:
    catalog, log = console.deps.runtime.catalog, console.deps.runtime.log
    rows = [{"s": s, "violations": catalog.violations(s.name)} for s in catalog.list()]
    names = {s.id: s.name for s in catalog.list()}
    letters = [
        {"letter": d, "source": names.get(d.source_id, d.source_id),
         "payload": d.payload[:600].decode("utf-8", "replace")}
        for d in log.dead_letters(limit=LOG_ROWS)
    ]  # fmt: skip
    shown.setdefault("created", None)
    shown.setdefault("error", None)
    syncs = console.deps.syncs.list() if console.deps.syncs is not None else []
    return console.render(
        request, "sources.html", title="Sources", rows=rows, letters=letters, syncs=syncs, **shown
    )


def routes(console: Console) -> list[Route]:
    base = "/console/destinations"
    return [
        Route(base, console.page("read", destinations), methods=["GET"]),
        Route(base + "/{name}", console.page("read", destination), methods=["GET"]),
        Route(base + "/{name}/replay", console.page("editor", replay), methods=["POST"]),
        Route("/console/sources", console.page("admin", sources), methods=["GET"]),
    ]
