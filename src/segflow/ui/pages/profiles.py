"""Profiles: search by any identifier, and one profile's identities and how they were linked,
traits, computed traits, scores with their reasons, clusters, segment memberships now and over
time, and its event timeline."""

from __future__ import annotations

from typing import Any

import duckdb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.errors import SegflowError
from segflow.profiles import Profile
from segflow.stream.history import valid_history
from segflow.stream.reader import profile_json
from segflow.ui.web import Console, Form, now_ms, redirect

PAGE = 50


def _find(console: Console, query: str) -> Profile | None:
    """``type:value`` looks up one identifier type; a bare value tries every type."""
    reader = console.deps.reader
    id_type, sep, value = query.partition(":")
    if sep and id_type in reader.id_types():
        return reader.lookup(id_type, value)
    for kind in reader.id_types():
        found = reader.lookup(kind, query)
        if found is not None:
            return found
    return None


def search(console: Console, request: Request, form: Form) -> Response:
    query = request.query_params.get("q", "").strip()
    if query:
        found = _find(console, query)
        if found is not None:
            return redirect(f"/console/profiles/{found.profile_id}")
    return console.render(
        request, "profiles.html", title="Profiles", query=query,
        id_types=console.deps.reader.id_types(), missing=bool(query),
    )  # fmt: skip


def _timeline(console: Console, profile: Profile, before: str | None) -> dict[str, Any]:
    try:
        page = console.deps.reader.timeline(profile, PAGE, before)
    except ValueError:
        page = console.deps.reader.timeline(profile, PAGE, None)
    return {"events": [r.event for r in page.events], "next_before": page.next_before}


def show(console: Console, request: Request, form: Form) -> Response:
    profile = console.deps.reader.get(request.path_params["profile_id"])
    if profile is None:
        return console.render(
            request, "error.html", 404, title="Not found", reason="no such profile"
        )
    timeline = _timeline(console, profile, request.query_params.get("before"))
    return console.render(
        request, "profile.html", title=f"Profile {profile.profile_id}",
        p=profile_json(profile), **timeline, **_warehouse_view(console, profile),
        merges=console.deps.reader.merges(profile),
        source_names={s.id: s.name for s in console.deps.runtime.catalog.list()},
    )  # fmt: skip


def _warehouse_view(console: Console, profile: Profile) -> dict[str, Any]:
    """Its memberships over time, in valid time (its events replayed in event time through the
    rules: docs/segments.md, "Membership history"), and the reasons behind its scores (from
    the warehouse; empty while nothing is loaded)."""
    ids = [profile.profile_id, *profile.absorbed]
    reader = console.deps.reader
    try:
        program = console.deps.segments.program()
        history = valid_history(reader.reader, reader.log, program, profile, now_ms()).intervals
    except SegflowError:
        history = []
    try:
        reasons = console.deps.segments.score_reasons(ids)
    except (duckdb.Error, SegflowError):
        reasons = {}
    return {"history": history[::-1], "reasons": {m: _pairs(r) for m, r in reasons.items()}}


def _pairs(reasons: Any) -> list[tuple[str, float]]:
    """A score's reasons as ``(feature, contribution)``: the jobs store ``[[feature, value]]``."""
    out = []
    for r in reasons if isinstance(reasons, list) else []:
        if isinstance(r, dict):
            out.append((str(r.get("feature")), float(r.get("contribution") or 0)))
        elif isinstance(r, list | tuple) and len(r) == 2:
            out.append((str(r[0]), float(r[1])))
    return out


def routes(console: Console) -> list[Route]:
    return [
        Route("/console/profiles", console.page("read", search), methods=["GET"]),
        Route("/console/profiles/{profile_id}", console.page("read", show), methods=["GET"]),
    ]
