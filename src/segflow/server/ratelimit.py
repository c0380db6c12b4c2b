"""Per-token rate limits for the admin API (``api.rate_limit_per_s``, ``api.rate_limit_burst``).

ASGI middleware around the ``/api`` app: a request bearing a *valid* API token spends one
token from that API token's bucket (:class:`~segflow.collect.limits.TokenBuckets`); over the
rate it gets 429 with ``Retry-After`` and the admin API's error body. Requests without a
valid token pass through untouched (the API answers them 401), so an invalid token can never
drain a real token's bucket.

>>> import asyncio, os, tempfile
>>> from segflow.catalog.tokens import TokenStore
>>> tokens = TokenStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> token = tokens.create("read")
>>> async def api(scope, receive, send):
...     await send({"type": "http.response.start", "status": 200, "headers": []})
...     await send({"type": "http.response.body", "body": b""})
>>> limited = TokenRateLimit(api, tokens, rate=1, burst=1, now=lambda: 0.0)
>>> statuses = []
>>> async def send(m):
...     if m["type"] == "http.response.start": statuses.append(m["status"])
>>> scope = {"type": "http", "method": "GET", "path": "/api/v1/status",
...          "headers": [(b"authorization", f"Bearer {token}".encode())]}
>>> async def twice():
...     await limited(scope, None, send); await limited(dict(scope), None, send)
>>> asyncio.run(twice()); statuses
[200, 429]
>>> tokens.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from segflow.api.auth import TokenVerifier
from segflow.collect.asgi import ASGIApp, Receive, Scope, Send, header
from segflow.collect.limits import TokenBuckets
from segflow.errors import SegflowError
from segflow.serving.errors import error_response
from segflow.telemetry.metrics import REQUESTS_REFUSED


def token_of(scope: Scope) -> str | None:
    """The bearer token (or ``X-API-Token``) of a request."""
    raw = header(scope, b"authorization")
    if raw:
        scheme, _, value = raw.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_token = header(scope, b"x-api-token")
    return api_token.decode("latin-1") if api_token else None


class TokenRateLimit:
    """See the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenVerifier,
        *,
        rate: float,
        burst: float,
        now: Callable[[], float] = time.monotonic,
        shared: Path | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.buckets = TokenBuckets(rate=rate, burst=burst, now=now, shared=shared)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.buckets.enabled:
            token = token_of(scope)
            info = None if token is None else self.tokens.verify(token)
            if info is not None:
                try:
                    self.buckets.take(info.token_id)
                except SegflowError as exc:
                    REQUESTS_REFUSED.labels(app="admin", reason=exc.code).inc()
                    await error_response(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
