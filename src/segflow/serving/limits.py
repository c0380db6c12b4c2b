"""A bound on admin API request bodies (``[api] max_body_bytes``): 413 before reading past it.

A declared ``Content-Length`` over the limit is refused before a byte of the body is read; a
chunked body is counted as it arrives and refused as soon as it passes the limit (the rest is
never read). Each refusal counts in ``segflow_http_requests_refused_total{app="admin",
reason="payload_too_large"}``. The answer has the admin API's error shape::

    {"error": {"code": "payload_too_large",
               "message": "api.max_body_bytes: over the api.max_body_bytes limit of 4194304",
               "details": {"field": "api.max_body_bytes", "reason": "over the ...",
                           "limit": "api.max_body_bytes", "allowed": 4194304,
                           "actual": 4194305}}}
"""

from __future__ import annotations

import msgspec

from segflow.collect.asgi import ASGIApp, Message, Receive, Scope, Send, declared_length
from segflow.collect.exceptions import PayloadTooLarge
from segflow.serving.errors import error_body
from segflow.telemetry.metrics import REQUESTS_REFUSED

LIMIT_NAME = "api.max_body_bytes"


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with a 413.

    >>> import asyncio
    >>> sent = []
    >>> async def app(scope, receive, send):
    ...     await receive()
    >>> async def receive():
    ...     return {"type": "http.request", "body": b"x" * 11, "more_body": False}
    >>> async def send(message):
    ...     sent.append(message)
    >>> scope = {"type": "http", "headers": [(b"content-length", b"11")]}
    >>> asyncio.run(BodyLimit(app, max_bytes=10)(scope, receive, send))
    >>> sent[0]["status"]
    413
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            REQUESTS_REFUSED.labels(app="admin", reason=PayloadTooLarge.code).inc()
            await _refuse(send, PayloadTooLarge(LIMIT_NAME, self.max_bytes, actual=declared))
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                REQUESTS_REFUSED.labels(app="admin", reason=PayloadTooLarge.code).inc()
                raise PayloadTooLarge(LIMIT_NAME, self.max_bytes, actual=seen)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except PayloadTooLarge as exc:
            if started:
                raise
            await _refuse(send, exc)


async def _refuse(send: Send, exc: PayloadTooLarge) -> None:
    body = msgspec.json.encode(error_body(exc))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
