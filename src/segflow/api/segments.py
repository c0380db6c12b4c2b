"""``/api/v1/segments`` and ``/api/v1/traits``: definitions, checks, previews and members.

=======  ======================================  ======  ============================================
GET      /api/v1/segments                         read    every segment: rule, version, current size
POST     /api/v1/segments                         editor  ``{"name", "rule", "description"?}``
GET      /api/v1/segments/{name}                  read    the current version, size and history
PUT      /api/v1/segments/{name}                  editor  ``{"rule", "description"?}`` a new version
DELETE   /api/v1/segments/{name}                  admin   refused while another segment uses it
GET      /api/v1/segments/{name}/members          read    ``?limit&cursor`` now; ``?at_ms`` at a past time
                                                          (valid time; ``&as_recorded=true``: recorded)
GET      /api/v1/segments/{name}/sizes            read    ``?days=30``: its size at each of the last days
                                                          (valid time; ``&as_recorded=true``: recorded)
GET      /api/v1/profiles/{ident}/segments/history read   when it entered and left each segment:
                                                          ``valid`` and ``recorded`` intervals
GET      /api/v1/profiles/{ident}/scores          read    scores with the reasons behind each
GET      /api/v1/profiles/{ident}/traits/history  read    every trait change, newest first
POST     /api/v1/segments/check                   read    ``{"rule"}`` -> every diagnostic (as you type)
POST     /api/v1/segments/preview                 read    ``{"rule", "at_ms"?}`` -> count + sample (SQL)
GET/POST /api/v1/traits                           read/editor  computed traits, same shapes
DELETE   /api/v1/traits/{name}                    admin
=======  ======================================  ======  ============================================

>>> import tempfile, os
>>> from segflow.segments.store import DefinitionStore
>>> svc = SegmentService(DefinitionStore(os.path.join(tempfile.mkdtemp(), "c.sqlite")))
>>> [r.path for r in segment_routes(svc, None)][:2]
['/api/v1/segments', '/api/v1/segments/check']
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.api.auth import Authorize
from segflow.api.common import actor, answer, endpoint, query_bool, query_int
from segflow.errors import NotFoundError, ValidationError
from segflow.rules.ast import split_scores
from segflow.segments.service import SegmentService
from segflow.segments.sizes import days_back, size_history
from segflow.segments.store import Kind
from segflow.stream.backfill import Progress
from segflow.stream.history import valid_history
from segflow.stream.reader import ProfileReader

JSON = "application/json"


async def _allow_all(request: Request, role: str) -> None:
    return None


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationError(key, "a non-empty string is required" if required else "must be text")
    return value


def segment_routes(
    service: SegmentService,
    reader: ProfileReader | None,
    authorize: Authorize = _allow_all,
    freshness: Callable[[], Mapping[str, Any]] | None = None,
    progress: Callable[[], Progress | None] | None = None,
) -> list[Route]:
    """The segment and trait routes over ``service``: members come from ``reader``, measured
    freshness from ``freshness`` (per segment, as the processor's ``Freshness.summary``),
    whether a segment's members are still filling from the processor's backfill ``progress``
    (both ``None`` when unknown: the processor's process is not running)."""

    def size(name: str) -> int | None:
        return None if reader is None else sum(1 for _ in reader.members(name))

    def filling(name: str) -> dict[str, float] | None:
        """``{"progress": 0.42}`` while a backfill rebuilds this segment's members."""
        found = progress() if progress is not None else None
        if found is None or not found.running or name not in found.segments:
            return None
        return {"progress": round(found.done, 4)}

    def listing(kind: Kind) -> Any:
        def handle(request: Request, body: dict[str, Any]) -> Any:
            out = [msgspec.to_builtins(d) for d in service.definitions(kind)]
            if kind == "segment":
                for d in out:
                    d["size"] = size(d["name"])
                    d["filling"] = filling(d["name"])
            return out

        return handle

    def put(kind: Kind) -> Any:
        def handle(request: Request, body: dict[str, Any]) -> Any:
            name = request.path_params.get("name") or _text(body, "name")
            rule = _text(body, "rule")
            description = _text(body, "description", required=False)
            if kind == "segment":
                return service.put_segment(name, rule, description, actor=actor(request))
            return service.put_trait(name, rule, description, actor=actor(request))

        return handle

    def show(kind: Kind) -> Any:
        def handle(request: Request, body: dict[str, Any]) -> Any:
            name = request.path_params["name"]
            current = msgspec.to_builtins(service.get(kind, name))
            if kind == "segment":
                current["size"] = size(name)
                current["filling"] = filling(name)
                current["freshness"] = (freshness() if freshness else {}).get(name)
            return {**current, "history": service.store.history(kind, name)}

        return handle

    def delete(kind: Kind) -> Any:
        def handle(request: Request, body: dict[str, Any]) -> Any:
            service.delete(kind, request.path_params["name"], actor=actor(request))
            return {"deleted": request.path_params["name"]}

        return handle

    def check(request: Request, body: dict[str, Any]) -> Any:
        diagnostics = service.check(_text(body, "rule"), trait=bool(body.get("trait")))
        return {
            "ok": not any(d.severity == "error" for d in diagnostics),
            "diagnostics": diagnostics,
        }

    def preview(request: Request, body: dict[str, Any]) -> Any:
        at_ms = body.get("at_ms")
        if at_ms is not None and not isinstance(at_ms, int):
            raise ValidationError("at_ms", "expected epoch milliseconds (an integer)")
        sample = body.get("sample", 20)
        if not isinstance(sample, int) or not 0 < sample <= 1000:
            raise ValidationError("sample", "expected an integer between 1 and 1000")
        return service.preview(_text(body, "rule"), at_ms=at_ms, sample=sample)

    def members_at(request: Request) -> Any:
        """Members at a past time: SQL over the warehouse (run in a thread)."""
        name = request.path_params["name"]
        service.get("segment", name)
        limit = query_int(request, "limit", 100, low=1, high=10_000)
        at_ms = query_int(request, "at_ms", 0, high=2**62)
        recorded = query_bool(request, "as_recorded")
        ids = service.members_at(name, at_ms, limit, recorded=recorded)
        return {"segment": name, "at_ms": at_ms, "time": "recorded" if recorded else "valid",
                "members": ids, "returned": len(ids)}  # fmt: skip

    def members_now(request: Request) -> Any:
        """A page of the current members: one catalog row and one scan of the membership
        index, answered inline like a profile read (no hop to a thread)."""
        name = request.path_params["name"]
        service.get("segment", name)
        limit = query_int(request, "limit", 100, low=1, high=10_000)
        cursor = request.query_params.get("cursor") or None
        found = (
            []
            if reader is None
            else list(itertools.islice(reader.members(name, cursor, page=limit + 1), limit + 1))
        )
        ids, more = found[:limit], len(found) > limit
        return {"segment": name, "members": ids, "returned": len(ids),
                "next_cursor": ids[-1] if more else None}  # fmt: skip

    async def members(request: Request) -> Response:
        async def work() -> Any:
            await authorize(request, "read")
            if "at_ms" in request.query_params:
                return await run_in_threadpool(members_at, request)
            return Response(msgspec.json.encode(members_now(request)), media_type=JSON)

        return await answer(request, work)

    def find(request: Request) -> Any:
        if reader is None:
            raise ValidationError("profile", "no profile state in this process")
        ident = request.path_params["ident"]
        id_type, _, value = ident.partition(":")
        try:
            profile = reader.lookup(id_type, value)
        except KeyError:
            raise ValidationError("identifier", f"unknown identifier type {id_type!r}") from None
        if profile is None:
            raise NotFoundError(f"no profile has {ident}", details={"identifier": ident})
        return profile

    def sizes(request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        service.get("segment", name)
        days = query_int(request, "days", 30, low=1, high=366)
        recorded = query_bool(request, "as_recorded")
        at = days_back(service.clock.now_ms(), days)
        if recorded:
            con = service.warehouse() if service.warehouse else None
            if con is None:
                raise ValidationError("warehouse", "this needs the warehouse, which is not open")
            try:
                found = size_history(con, [name], at)[name]
            finally:
                con.close()
        else:
            found = service.sizes([name], at)[name]
        return {
            "segment": name,
            "time": "recorded" if recorded else "valid",
            "sizes": [{"at_ms": t, "size": n} for t, n in zip(at, found, strict=True)],
        }

    def profile_history(request: Request, body: dict[str, Any]) -> Any:
        profile = find(request)
        assert reader is not None  # find() refuses without one
        ids = [profile.profile_id, *profile.absorbed]
        valid = valid_history(
            reader.reader, reader.log, service.program(), profile, service.clock.now_ms()
        )
        return {
            "profile_id": profile.profile_id,
            "valid": valid.intervals,
            "valid_complete": valid.complete,
            "recorded": service.history(ids),
        }

    def trait_history(request: Request, body: dict[str, Any]) -> Any:
        profile = find(request)
        changes = [
            {"key": c.key, "value": c.value, "at_ms": c.at_ms, "message_id": c.message_id}
            for c in reversed(profile.trait_history)
        ]
        return {"profile_id": profile.profile_id, "traits": profile.traits, "history": changes}

    def profile_scores(request: Request, body: dict[str, Any]) -> Any:
        profile = find(request)
        ids = [profile.profile_id, *profile.absorbed]
        reasons = service.score_reasons(ids)
        scores, ranks = split_scores(profile.scores)
        return {
            "profile_id": profile.profile_id,
            "scores": {
                m: {
                    "score": v,
                    "reasons": reasons.get(m, []),
                    "top_share": ranks.get(m, {}).get("top"),
                }
                for m, v in scores.items()
            },
            "clusters": profile.clusters,
        }

    base, traits = "/api/v1/segments", "/api/v1/traits"
    return [
        Route(base, endpoint(authorize, "read", listing("segment")), methods=["GET"]),
        Route(f"{base}/check", endpoint(authorize, "read", check), methods=["POST"]),
        Route(f"{base}/preview", endpoint(authorize, "read", preview), methods=["POST"]),
        Route(base, endpoint(authorize, "editor", put("segment"), status=201), methods=["POST"]),
        Route(f"{base}/{{name}}", endpoint(authorize, "read", show("segment")), methods=["GET"]),
        Route(f"{base}/{{name}}", endpoint(authorize, "editor", put("segment")), methods=["PUT"]),
        Route(
            f"{base}/{{name}}", endpoint(authorize, "admin", delete("segment")), methods=["DELETE"]
        ),
        Route(
            "/api/v1/profiles/{ident}/segments/history",
            endpoint(authorize, "read", profile_history),
            methods=["GET"],
        ),
        Route(
            "/api/v1/profiles/{ident}/traits/history",
            endpoint(authorize, "read", trait_history),
            methods=["GET"],
        ),
        Route(
            "/api/v1/profiles/{ident}/scores",
            endpoint(authorize, "read", profile_scores),
            methods=["GET"],
        ),
        Route(f"{base}/{{name}}/members", members, methods=["GET"]),
        Route(f"{base}/{{name}}/sizes", endpoint(authorize, "read", sizes), methods=["GET"]),
        Route(traits, endpoint(authorize, "read", listing("trait")), methods=["GET"]),
        Route(traits, endpoint(authorize, "editor", put("trait"), status=201), methods=["POST"]),
        Route(f"{traits}/{{name}}", endpoint(authorize, "read", show("trait")), methods=["GET"]),
        Route(f"{traits}/{{name}}", endpoint(authorize, "editor", put("trait")), methods=["PUT"]),
        Route(
            f"{traits}/{{name}}", endpoint(authorize, "admin", delete("trait")), methods=["DELETE"]
        ),
    ]
