"""``/api/v1/profiles``: the profile API, served from the processor's state (never the warehouse).

``{ident}`` is ``type:value`` with type one of ``profile_id``, ``user_id``, ``anonymous_id``,
``email``, ``group_id`` or a configured external id type.

=======  ==========================================  =====
GET      /api/v1/profiles/{ident}                     read
GET      /api/v1/profiles/{ident}/events?limit&before read
GET      /api/v1/profiles/{ident}/segments            read
GET      /api/v1/profiles/{ident}/merges              read
POST     /api/v1/profiles/{ident}/split               admin  ``{"identifiers": ["type:value"]}``
=======  ==========================================  =====

>>> from segflow.stream import MemoryStateStore, ProfileReader
>>> routes = profile_routes(ProfileReader(MemoryStateStore().reader(), log=None), allow_all)
>>> [r.path for r in routes][0]
'/api/v1/profiles/{ident}'
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.api.auth import Authorize
from segflow.api.common import actor, answer
from segflow.catalog.audit import AuditLog
from segflow.errors import NotFoundError, ValidationError
from segflow.profiles import Profile
from segflow.serving.deps import Splitter
from segflow.stream.reader import ProfileReader, profile_json

MAX_PAGE = 500


async def allow_all(request: Request, role: str) -> None:
    """An authorizer that lets everything through (tests, local single-user runs)."""
    return None


def _find(reader: ProfileReader, ident: str) -> Profile:
    id_type, sep, value = ident.partition(":")
    if not sep or not value:
        raise ValidationError("identifier", "expected type:value, e.g. user_id:42")
    try:
        profile = reader.lookup(id_type, value)
    except KeyError:
        raise ValidationError(
            "identifier",
            f"unknown identifier type {id_type!r}; known: {', '.join(reader.id_types())}",
        ) from None
    if profile is None:
        raise NotFoundError(f"no profile has {ident}", details={"identifier": ident})
    return profile


Handler = Callable[[ProfileReader, Profile, Request], Any]


def _endpoint(
    reader: ProfileReader, authorize: Authorize, role: str, fn: Handler, *, inline: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        async def work() -> Response:
            await authorize(request, role)
            profile = _find(reader, request.path_params["ident"])
            request.state.body = await request.body() if request.method == "POST" else b""
            # point reads answer inline (sub-ms); timeline, merges and splits go to a thread
            data = (
                fn(reader, profile, request)
                if inline
                else await run_in_threadpool(fn, reader, profile, request)
            )
            return Response(msgspec.json.encode(data), media_type="application/json")

        return await answer(request, work)

    return endpoint


def _profile(reader: ProfileReader, profile: Profile, request: Request) -> Any:
    return profile_json(profile)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise ValidationError(name, "must be an integer") from None
    if not 1 <= value <= MAX_PAGE:
        raise ValidationError(name, f"must be between 1 and {MAX_PAGE}")
    return value


def _events(reader: ProfileReader, profile: Profile, request: Request) -> Any:
    limit = _int_param(request, "limit", 50)
    before = request.query_params.get("before")
    try:
        page = reader.timeline(profile, limit, before)
    except ValueError:
        raise ValidationError("before", "expected epoch ms or a next_before cursor") from None
    events = [
        {**msgspec.to_builtins(r.event), "partition": r.partition, "offset": r.offset}
        for r in page.events
    ]
    return {"profile_id": profile.profile_id, "events": events, "next_before": page.next_before}


def _segments(reader: ProfileReader, profile: Profile, request: Request) -> Any:
    return {
        "profile_id": profile.profile_id,
        "segments": list(profile.members),
        "computed_traits": profile.computed_traits,
    }


def _merges(reader: ProfileReader, profile: Profile, request: Request) -> Any:
    return {
        "profile_id": profile.profile_id,
        "merges": msgspec.to_builtins(reader.merges(profile)),
        "conflicts": msgspec.to_builtins(reader.conflicts(profile)),
    }


class _SplitBody(msgspec.Struct, frozen=True):
    identifiers: list[str]


def _split_handler(splitter: Splitter, audit: AuditLog | None) -> Handler:
    def split(reader: ProfileReader, profile: Profile, request: Request) -> Any:
        body = request.state.body
        try:
            parsed = msgspec.json.decode(body, type=_SplitBody)
        except msgspec.DecodeError as exc:
            raise ValidationError("identifiers", str(exc)) from None
        result = msgspec.to_builtins(splitter.split(profile.profile_id, parsed.identifiers))
        if audit is not None:
            audit.record(actor(request), "profile.split", profile.profile_id,
                         {"identifiers": parsed.identifiers}, result)  # fmt: skip
        return result

    return split


def profile_routes(
    reader: ProfileReader,
    authorize: Authorize = allow_all,
    splitter: Splitter | None = None,
    audit: AuditLog | None = None,
) -> list[Route]:
    """The profile API's routes, from explicit dependencies (mount them in any Starlette app).

    ``POST .../split`` is served only when a ``splitter`` (the processor) is given; splits are
    recorded in ``audit``.
    """
    base = "/api/v1/profiles/{ident}"
    split = (
        []
        if splitter is None
        else [
            Route(
                f"{base}/split",
                _endpoint(reader, authorize, "admin", _split_handler(splitter, audit)),
                methods=["POST"],
            )
        ]
    )
    return [
        *split,
        Route(base, _endpoint(reader, authorize, "read", _profile, inline=True), methods=["GET"]),
        Route(f"{base}/events", _endpoint(reader, authorize, "read", _events), methods=["GET"]),
        Route(
            f"{base}/segments",
            _endpoint(reader, authorize, "read", _segments, inline=True),
            methods=["GET"],
        ),
        Route(f"{base}/merges", _endpoint(reader, authorize, "read", _merges), methods=["GET"]),
    ]
