"""``/api/v1/destinations``: destinations, subscriptions, delivery logs, dead letters.

Built from explicit dependencies: an :class:`~segflow.activate.service.ActivationService`
and an ``authorize(request, role)`` coroutine (:func:`segflow.api.auth.authorizer`).

======  ==================================================================  ======
GET     /api/v1/destinations                                                read
POST    /api/v1/destinations   (returns the signing secret, once)           admin
GET     /api/v1/destinations/{name}   (with delivery stats and notices)     read
PATCH   /api/v1/destinations/{name}   (``resync: true`` re-sends members)   admin
DELETE  /api/v1/destinations/{name}                                         admin
POST    /api/v1/destinations/{name}/test                                    editor
POST    /api/v1/destinations/{name}/secrets   (rotate)                      admin
PUT     /api/v1/destinations/{name}/subscriptions/{segment}                 editor
DELETE  /api/v1/destinations/{name}/subscriptions/{segment}                 editor
POST    /api/v1/destinations/{name}/snapshots/{segment}  (file: Parquet+CSV)  editor
GET     /api/v1/destinations/{name}/deliveries?status=&limit=&since_ms=     read
GET     /api/v1/destinations/{name}/dead-letters?since_ms=&limit=           read
POST    /api/v1/destinations/{name}/dead-letters/replay  ``{since_ms, ids}`` editor
        (answers ``{replayed, superseded}``)
======  ==================================================================  ======
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.activate.service import ActivationService
from segflow.api.common import actor, answer, json_body
from segflow.catalog.audit import AuditLog
from segflow.errors import NotFoundError, ValidationError

Authorize = Callable[[Request, str], Awaitable[None]]
Call = Callable[[ActivationService, Request, dict[str, Any]], Any]
PREFIX = "/api/v1/destinations"


async def allow_all(request: Request, role: str) -> None:
    """An authorizer that lets everything through (tests, single-user local runs)."""
    return None


def _endpoint(
    service: ActivationService, authorize: Authorize, role: str, fn: Call, *, status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        async def work() -> Any:
            await authorize(request, role)
            body = await json_body(request)
            result = await run_in_threadpool(fn, service, request, body)
            if isinstance(result, Awaitable):
                result = await result
            return result

        return await answer(request, work, status=status)

    return endpoint


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    try:
        return default if raw is None else int(raw)
    except ValueError as exc:
        raise ValidationError(name, "expected an integer") from exc


def _strings(body: Any, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A list-of-text field of a subscription (``kinds``, ``traits``)."""
    value = body.get(key, default) if isinstance(body, dict) else default
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError(key, "expected a list of strings")
    return tuple(value)


def _create(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    subs = body.pop("subscriptions", [])
    if not isinstance(subs, list) or not all(
        isinstance(s, dict) and isinstance(s.get("segment"), str) for s in subs
    ):
        raise ValidationError(
            "subscriptions", 'expected a list of {"segment", "kinds"?, "traits"?}'
        )
    for s in subs:  # every subscription checked before anything is created
        _strings(s, "kinds", ("entered", "exited"))
        _strings(s, "traits", ())
    initial_sync = bool(body.pop("initial_sync", False))
    dest, secret = svc.create_destination(body)
    queued = 0
    for sub in subs:
        queued += svc.subscribe(
            dest.name,
            sub["segment"],
            kinds=_strings(sub, "kinds", ("entered", "exited")),
            traits=_strings(sub, "traits", ()),
            initial_sync=initial_sync,
        )[1]
    return {
        "destination": dest,
        "secret": secret,
        "subscriptions": svc.store.subscriptions(dest.name),
        "queued": queued,
    }


def _name(request: Request) -> str:
    return str(request.path_params["name"])


def _update(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    resync = bool(body.pop("resync", False))
    return {"destination": svc.update_destination(_name(request), body, resync=resync)}


def _delete(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    svc.delete_destination(_name(request))
    return {"deleted": _name(request)}


def _subscribe(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    sub, queued = svc.subscribe(
        _name(request),
        request.path_params["segment"],
        kinds=_strings(body, "kinds", ("entered", "exited")),
        traits=_strings(body, "traits", ()),
        initial_sync=bool(body.get("initial_sync", False)),
    )
    return {"subscription": sub, "queued": queued}


def _unsubscribe(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    if not svc.unsubscribe(_name(request), request.path_params["segment"]):
        raise NotFoundError(
            "no such subscription", details={"segment": request.path_params["segment"]}
        )
    return {"deleted": request.path_params["segment"]}


def _deliveries(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    status = request.query_params.get("status")
    return {
        "deliveries": svc.deliveries(
            _name(request),
            status=status,
            since_ms=_int(request, "since_ms", 0),
            limit=_int(request, "limit", 100),
        ),
        "stats": svc.store.stats(_name(request)),
    }


def _dead(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    return {
        "dead_letters": svc.dead_letters(
            _name(request), since_ms=_int(request, "since_ms", 0), limit=_int(request, "limit", 100)
        )
    }


_INT64 = msgspec.Meta(ge=-(2**63), le=2**63 - 1)


def _field(body: dict[str, Any], name: str, kind: Any, default: Any) -> Any:
    """``body[name]`` as ``kind`` (a 400 naming the field otherwise, never a 500)."""
    try:
        return msgspec.convert(body.get(name, default), kind)
    except msgspec.ValidationError as exc:
        raise ValidationError(name, str(exc)) from exc


def _replay(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
    Int64 = Annotated[int, _INT64]
    ids = _field(body, "ids", list[Int64], [])
    since_ms = _field(body, "since_ms", Int64, 0)
    return svc.replay(_name(request), since_ms=since_ms, ids=ids)


def _state(svc: ActivationService, name: str) -> dict[str, Any] | None:
    """A destination and its subscriptions (never secrets), for the audit log."""
    try:
        dest = svc.store.destination(name)
    except NotFoundError:
        return None
    subs = [msgspec.to_builtins(s) for s in svc.store.subscriptions(name)]
    return {"destination": msgspec.to_builtins(dest), "subscriptions": subs}


def _audited(audit: AuditLog | None, action: str, fn: Call) -> Call:
    """``fn``, recording the destination before and after in ``audit`` when it succeeds."""
    if audit is None:
        return fn

    def call(svc: ActivationService, request: Request, body: dict[str, Any]) -> Any:
        name = request.path_params.get("name") or str(body.get("name", ""))
        before = _state(svc, name)
        result = fn(svc, request, body)
        audit.record(actor(request), action, name, before, _state(svc, name))
        return result

    return call


def destination_routes(
    service: ActivationService, authorize: Authorize = allow_all, audit: AuditLog | None = None
) -> list[Route]:
    """The routes of ``/api/v1/destinations``; mount them in the API app. Changes are recorded
    in ``audit`` when given.

    >>> import tempfile, os
    >>> from segflow.activate.ssrf import UrlGuard
    >>> from segflow.activate.store import DeliveryStore
    >>> svc = ActivationService(DeliveryStore(os.path.join(tempfile.mkdtemp(), "d.sqlite")), guard=UrlGuard())
    >>> len(destination_routes(svc)) > 5
    True
    """

    def ep(role: str, fn: Call, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
        return _endpoint(service, authorize, role, fn, status=status)

    def changes(role: str, action: str, fn: Call, status: int = 200) -> Any:
        return ep(role, _audited(audit, f"destination.{action}", fn), status)

    return [
        Route(
            PREFIX,
            ep("read", lambda s, r, b: {"destinations": s.list_destinations()}),
            methods=["GET"],
        ),
        Route(PREFIX, changes("editor", "create", _create, 201), methods=["POST"]),
        Route(PREFIX + "/{name}", ep("read", lambda s, r, b: s.show(_name(r))), methods=["GET"]),
        Route(PREFIX + "/{name}", changes("editor", "update", _update), methods=["PATCH"]),
        Route(PREFIX + "/{name}", changes("admin", "delete", _delete), methods=["DELETE"]),
        Route(
            PREFIX + "/{name}/test",
            ep("editor", lambda s, r, b: s.test_send(_name(r))),
            methods=["POST"],
        ),
        Route(
            PREFIX + "/{name}/secrets",
            changes(
                "editor", "rotate_secret", lambda s, r, b: {"secret": s.rotate_secret(_name(r))}
            ),
            methods=["POST"],
        ),
        Route(
            PREFIX + "/{name}/subscriptions/{segment}",
            changes("editor", "subscribe", _subscribe),
            methods=["PUT"],
        ),
        Route(
            PREFIX + "/{name}/subscriptions/{segment}",
            changes("editor", "unsubscribe", _unsubscribe),
            methods=["DELETE"],
        ),
        Route(
            PREFIX + "/{name}/snapshots/{segment}",
            ep(
                "editor",
                lambda s, r, b: {"written": s.snapshot(_name(r), r.path_params["segment"])},
            ),
            methods=["POST"],
        ),
        Route(PREFIX + "/{name}/deliveries", ep("read", _deliveries), methods=["GET"]),
        Route(PREFIX + "/{name}/dead-letters", ep("read", _dead), methods=["GET"]),
        Route(
            PREFIX + "/{name}/dead-letters/replay",
            changes("editor", "replay", _replay),
            methods=["POST"],
        ),
    ]
