"""Per-request context for the whole serve app: a request id, latency, one access-log line.

The id is the incoming ``X-Request-Id`` when it is a short printable token, else a new random
one (from :mod:`segflow.spec.ids`: no system call on the request path); it is returned in the response's ``X-Request-Id`` header and set in
:data:`segflow.telemetry.logs.REQUEST_ID` for every log line written while the request runs. Latency
goes to ``segflow_http_request_duration_seconds`` labelled with the app (collect, admin,
console, ops) and the route *template* (never a raw path: paths carry write keys and ids).
The access line (logger ``segflow.access``, INFO) has the method, route, status and
duration; no query string, no headers, no body.

>>> import asyncio
>>> async def app(scope, receive, send):
...     await send({"type": "http.response.start", "status": 204, "headers": []})
>>> sent = []
>>> async def send(message): sent.append(message)
>>> scope = {"type": "http", "method": "GET", "path": "/v1/batch",
...          "headers": [(b"x-request-id", b"abc-1")]}
>>> asyncio.run(RequestContext(app)(scope, None, send))
>>> sent[0]["headers"]
[(b'x-request-id', b'abc-1')]
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from segflow.collect.asgi import ASGIApp, Message, Receive, Scope, Send, header
from segflow.spec.ids import random_hex
from segflow.telemetry.logs import REQUEST_ID
from segflow.telemetry.metrics import HTTP_DURATION

access = logging.getLogger("segflow.access")

_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_COLLECT_ROUTES = frozenset(
    {"track", "identify", "page", "screen", "group", "alias", "t", "i", "p", "s", "g", "a",
     "batch", "import", "b", "health", "sourceConfig"}
)  # fmt: skip
_OPS = frozenset({"/metrics", "/healthz", "/readyz"})


def app_of(path: str) -> str:
    """Which app a path belongs to (a metric label).

    >>> app_of("/api/v1/segments"), app_of("/v1/batch"), app_of("/readyz")
    ('admin', 'collect', 'ops')
    """
    if path.startswith("/api/"):
        return "admin"
    if path == "/console" or path.startswith("/console/"):
        return "console"
    if path in _OPS:
        return "ops"
    return "collect"


def route_of(app: str, scope: Scope) -> str:
    """The route template of a served request (bounded: a metric label).

    >>> route_of("collect", {"path": "/beacon/v1/batch"}), route_of("collect", {"path": "/x/y"})
    ('batch', 'other')
    """
    route = scope.get("route")
    if route is not None and isinstance(getattr(route, "path", None), str):
        return str(route.path)
    path: str = scope.get("path", "")
    if app == "ops":
        return path
    if app != "collect":
        return "other"
    name = path.strip("/").removeprefix("beacon/").removeprefix("v1/").removeprefix("v1")
    if name.startswith("projects/") and name.endswith("/settings"):
        return "settings"
    return name if name in _COLLECT_ROUTES else "other"


class RequestContext:
    """ASGI middleware around the serve app (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        request_id = incoming.decode() if incoming and _VALID_ID.match(incoming) else random_hex(64)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self._observe(scope, status, elapsed)
            REQUEST_ID.reset(token)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        app = app_of(scope.get("path", ""))
        route = route_of(app, scope)
        method = scope.get("method", "")
        key = (app, route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_DURATION.labels(
                app=app, route=route, method=method, status=str(status)
            )
        child.observe(elapsed)
        if access.isEnabledFor(logging.INFO):
            access.info(
                "%s %s %d %.1fms",
                method,
                route,
                status,
                elapsed * 1000,
                extra={"http": {"app": app, "route": route, "method": method, "status": status,
                                "duration_ms": round(elapsed * 1000, 2)}},
            )  # fmt: skip
