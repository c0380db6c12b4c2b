"""Segments: the list with sizes, and the rule editor (check and preview as you type, save).

``POST /console/segments/try`` is what the editor's script calls while you type: every
diagnostic of the rule and, when it has no errors, the warehouse preview (count and sample).
Saving is an ordinary form POST, so the editor works without the script too.
"""

from __future__ import annotations

import itertools
from typing import Any

import duckdb
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from segflow.errors import SegflowError, ValidationError
from segflow.rules import Diagnostic, RuleSyntaxError
from segflow.segments.sizes import days_back
from segflow.ui.highlight import KEYWORDS
from segflow.ui.svg import sparkline, xy
from segflow.ui.web import Console, Form, redirect

SAMPLE = 10
DAYS = 30


def _size(console: Console, name: str) -> int:
    return sum(1 for _ in console.deps.reader.members(name))


def _filling(console: Console, name: str) -> float | None:
    """The share of profiles rebuilt while a backfill fills this segment (None: it is not)."""
    figures = console.deps.figures.figures()  # None: the processor's process is not running
    progress = figures.backfill if figures else None
    if progress is None or not progress.running or name not in progress.segments:
        return None
    return progress.done


def _freshness(console: Console, name: str) -> dict[str, Any] | None:
    figures = console.deps.figures.figures()
    return figures.freshness.get(name) if figures else None


def _history(console: Console, names: list[str]) -> dict[str, list[int]]:
    """Each segment's size at each of the last :data:`DAYS` days, in valid time (its rule's
    SQL over the warehouse at each instant, as a preview; docs/segments.md), drawn once a
    minute at most (``segflow.ui.charts``)."""
    if not names:
        return {}
    try:
        return console.charts.sizes(console.deps.segments, names, lambda now: days_back(now, DAYS))
    except (duckdb.Error, SegflowError):
        return {}


def segment_list(console: Console, request: Request, form: Form) -> Response:
    found = console.deps.segments.definitions("segment")
    history = _history(console, [d.name for d in found])
    rows = [
        {
            "d": d,
            "size": _size(console, d.name),
            "filling": _filling(console, d.name),
            "trend": sparkline(history.get(d.name, [])),
        }
        for d in found
    ]
    return console.render(request, "segments.html", title="Segments", rows=rows, days=DAYS)


def _editor(console: Console, request: Request, *, status: int = 200, **values: Any) -> Response:
    values.setdefault("diagnostics", [])
    values.setdefault("members", [])
    values.setdefault("error", None)
    values.setdefault("chart", None)
    return console.render(
        request, "segment_edit.html", status=status, keywords=sorted(KEYWORDS), **values
    )


def segment_new(console: Console, request: Request, form: Form) -> Response:
    return _editor(
        console, request, title="New segment", name="", rule="", description="", new=True
    )


def segment_show(console: Console, request: Request, form: Form) -> Response:
    name = request.path_params["name"]
    try:
        d = console.deps.segments.get("segment", name)
    except SegflowError:
        return console.render(
            request, "error.html", 404, title="Not found", reason=f"no segment {name}"
        )
    ids = itertools.islice(console.deps.reader.members(name), SAMPLE)
    members = [(pid, console.label(pid)) for pid in ids]
    sizes = _history(console, [name]).get(name, [])
    chart = xy([("members", list(enumerate(sizes)))], x_label=f"days (0 = {DAYS} days ago)",
               y_label="members", x_max=DAYS) if sizes else None  # fmt: skip
    return _editor(
        console, request, title=f"Segment {name}", name=name, rule=d.rule,
        description=d.description, new=False, version=d.version,
        size=_size(console, name), members=members, chart=chart,
        filling=_filling(console, name),
        freshness=_freshness(console, name),
    )  # fmt: skip


def _diagnostics(exc: SegflowError) -> list[Diagnostic]:
    return list(exc.diagnostics) if isinstance(exc, RuleSyntaxError) else []


def segment_save(console: Console, request: Request, form: Form) -> Response:
    name = request.path_params.get("name") or form.get("name", "").strip()
    rule, description = form.get("rule", ""), form.get("description", "")
    try:
        console.deps.segments.put_segment(name, rule, description, actor=console.actor(request))
    except SegflowError as exc:
        return _editor(
            console, request, status=400 if isinstance(exc, ValidationError) else 409,
            title="Segment", name=name, rule=rule, description=description,
            new="name" not in request.path_params, error=exc.message,
            diagnostics=_diagnostics(exc),
        )  # fmt: skip
    return redirect(f"/console/segments/{name}")


def segment_try(console: Console, request: Request, form: Form) -> Response:
    rule = form.get("rule", "")
    diagnostics = console.deps.segments.check(rule) if rule.strip() else []
    ok = bool(rule.strip()) and not any(d.severity == "error" for d in diagnostics)
    out: dict[str, Any] = {"ok": ok, "diagnostics": msgspec.to_builtins(diagnostics)}
    if ok:
        try:
            preview = console.deps.segments.preview(rule, sample=SAMPLE)
            sample = [{"profile_id": p, "label": console.label(p)} for p in preview.sample]
            out["preview"] = {"count": preview.count, "sample": sample}
        except (SegflowError, duckdb.Error) as exc:
            out["preview_error"] = getattr(exc, "message", str(exc))
            if isinstance(exc, SegflowError):
                out["diagnostics"] += msgspec.to_builtins(_diagnostics(exc))
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


def routes(console: Console) -> list[Route]:
    base = "/console/segments"
    return [
        Route(base, console.page("read", segment_list), methods=["GET"]),
        Route(base, console.page("editor", segment_save), methods=["POST"]),
        Route(f"{base}/new", console.page("read", segment_new), methods=["GET"]),
        Route(f"{base}/try", console.page("read", segment_try), methods=["POST"]),
        Route(base + "/{name}", console.page("read", segment_show), methods=["GET"]),
        Route(base + "/{name}", console.page("editor", segment_save), methods=["POST"]),
    ]
