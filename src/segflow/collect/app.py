"""The collection API: a Segment-compatible ASGI app over an :class:`Ingestor`.

Routes (an optional ``/v1`` prefix is accepted everywhere, so ``/v1/b`` and ``/b`` are one):

- ``POST track|identify|page|screen|group|alias`` and analytics.js's ``t|i|p|s|g|a``: one message;
- ``POST batch|import|b``: a batch (also ``/beacon/v1/batch?writeKey=`` for RudderStack's beacon);
- ``GET projects/{writeKey}/settings`` (Segment SDKs) and ``GET sourceConfig`` (RudderStack);
- ``POST webhooks/{vendor}`` (and Mailchimp's ``GET``): vendor webhooks (``collect.webhooks``);
- ``GET health``; ``OPTIONS *`` (CORS preflight).

Statuses follow the SDKs' retry logic: 200 once durable; 400/413 for permanent errors (SDKs
drop those); 401 for a bad key; 429/503 with ``Retry-After`` for backpressure (SDKs retry).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from segflow.clock import Clock, WallClock
from segflow.collect.asgi import Receive, Scope, Send, header, read_body, send_empty, send_json
from segflow.collect.auth import basic_user
from segflow.collect.catalog import Source
from segflow.collect.cors import CorsPolicy
from segflow.collect.exceptions import PayloadTooLarge, Unauthorized
from segflow.collect.ingest import Ingestor, Request
from segflow.collect.limits import Admission, TokenBuckets
from segflow.collect.responses import error_response
from segflow.collect.sdk_settings import rudderstack_source_config, segment_settings
from segflow.collect.webhooks.receiver import Cipher, WebhookReceiver
from segflow.errors import SegflowError
from segflow.spec.exceptions import InvalidMessage
from segflow.spec.wire import WireMessage, decode_batch, peek_write_key
from segflow.telemetry.metrics import REQUESTS_REFUSED

logger = logging.getLogger("segflow.collect")

SINGLE_ROUTES = {
    "track": "track", "t": "track",
    "identify": "identify", "i": "identify",
    "page": "page", "p": "page",
    "screen": "screen", "s": "screen",
    "group": "group", "g": "group",
    "alias": "alias", "a": "alias",
}  # fmt: skip
BATCH_ROUTES = frozenset({"batch", "import", "b"})
_SETTINGS = re.compile(r"^projects/([^/]+)/settings$")

Handler = Callable[[Scope, Receive, Send, list[tuple[bytes, bytes]]], Awaitable[None]]


class CollectorApp:
    """The ASGI app (see module docstring)."""

    def __init__(
        self,
        ingestor: Ingestor,
        *,
        clock: Clock | None = None,
        secrets: Cipher | None = None,
        shared_limits: Path | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.settings = ingestor.settings
        self.cors = CorsPolicy(self.settings.cors_origins)
        self.clock = clock or WallClock()
        self.limits = TokenBuckets(  # shared_limits: one limit across the server's workers
            rate=self.settings.rate_limit_events_per_s,
            burst=self.settings.rate_limit_burst,
            shared=shared_limits,
        )
        self.admission = Admission(
            self.settings.max_inflight_requests, retry_after_s=self.settings.retry_after_s
        )
        self.webhooks = WebhookReceiver(
            ingestor, clock=self.clock, limits=self.limits, cipher=secrets
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        cors = self.cors.headers(header(scope, b"origin"))
        try:
            await self._route(scope, receive, send, cors)
        except SegflowError as exc:
            status, body, extra = error_response(exc, self.settings.retry_after_s)
            REQUESTS_REFUSED.labels(app="collect", reason=exc.code).inc()
            await send_json(send, status, body, [*cors, *extra])
        except Exception:
            logger.exception("unexpected error in the collector")
            await send_json(
                send, 500, {"code": "internal_error", "message": "internal error"}, cors
            )

    async def _route(
        self, scope: Scope, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        method = scope["method"]
        path = _route_path(scope["path"])
        if method == "OPTIONS":
            preflight = self.cors.preflight(
                header(scope, b"origin"), header(scope, b"access-control-request-headers")
            )
            await send_empty(send, 204, preflight)
            return
        if method == "POST" and path in SINGLE_ROUTES:
            await self._admitted(self._single(scope, receive, send, cors, SINGLE_ROUTES[path]))
        elif method == "POST" and path in BATCH_ROUTES:
            await self._admitted(self._batch(scope, receive, send, cors))
        elif path.startswith("webhooks/"):
            vendor = path[len("webhooks/") :]
            await self._admitted(self.webhooks(scope, receive, send, cors, vendor))
        elif method in ("GET", "HEAD") and path == "health":
            await send_json(
                send, 200, {"status": "ok", "pendingEvents": self.ingestor.log.pending_events}, cors
            )
        elif method in ("GET", "HEAD") and _SETTINGS.match(path):
            await self._settings(scope, send, cors, _SETTINGS.match(path).group(1))  # type: ignore[union-attr]
        elif method in ("GET", "HEAD") and path == "sourceConfig":
            await self._source_config(scope, send, cors)
        elif path in SINGLE_ROUTES or path in BATCH_ROUTES:
            await send_json(
                send, 405, {"code": "method_not_allowed", "message": f"{method} not allowed"}, cors
            )
        else:
            await send_json(
                send, 404, {"code": "not_found", "message": f"no route {scope['path']}"}, cors
            )

    # -- ingestion ---------------------------------------------------------------------------

    async def _admitted(self, handler: Coroutine[Any, Any, None]) -> None:
        """Run an ingestion handler within ``max_inflight_requests`` (else 503 at once)."""
        try:
            self.admission.enter()
        except SegflowError:
            handler.close()  # never awaited: close it (no "never awaited" warning)
            raise
        try:
            await handler
        finally:
            self.admission.leave()

    def _authenticate(self, scope: Scope, body_key: str | None) -> Source:
        catalog = self.ingestor.catalog
        candidates = (
            basic_user(header(scope, b"authorization")),
            body_key,
            _query_param(scope, "writeKey"),
        )
        for key in candidates:
            source = catalog.authenticate(key)
            if source is not None:
                return source
        raise Unauthorized(
            "a valid write key is required (HTTP Basic user name, or writeKey in the body)"
        )

    def _request(
        self, scope: Scope, source: Source, call: str | None, batch: Any = None
    ) -> Request:
        client = scope.get("client")
        return Request(
            source=source,
            received_at_ms=self.clock.now_ms(),
            ip=client[0] if client else None,
            call=call,
            batch=batch,
        )

    async def _single(
        self, scope: Scope, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]], call: str
    ) -> None:
        body = await read_body(scope, receive, self.settings.max_message_bytes, "max_message_bytes")
        item = self.ingestor.decode_raw(body)
        key = item.write_key if isinstance(item, WireMessage) else peek_write_key(body)
        source = self._authenticate(scope, key)
        self.limits.take(source.id)
        result = await self.ingestor.ingest_async(
            self._request(scope, source, call), [item], [body]
        )
        if result.refused:
            refusal = result.refused[0]
            detail = {
                "code": "invalid_message",
                "field": refusal.field,
                "reason": refusal.reason,
                "messageId": refusal.message_id,
            }
            await send_json(send, 400, {"success": False, **detail}, cors)
        else:
            await send_json(send, 200, {"success": True}, cors)

    async def _batch(
        self, scope: Scope, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        body = await read_body(scope, receive, self.settings.max_batch_bytes, "max_batch_bytes")
        try:
            batch = decode_batch(body)
        except InvalidMessage as exc:
            source = self._authenticate(scope, peek_write_key(body))
            await self.ingestor.dead_letter_async(self._request(scope, source, None), body, exc)
            raise
        source = self._authenticate(scope, batch.write_key)
        limit = self.settings.max_batch_messages
        if len(batch.batch) > limit:
            raise PayloadTooLarge("max_batch_messages", limit, actual=len(batch.batch))
        self.limits.take(source.id, len(batch.batch))
        raws = batch.batch  # msgspec.Raw views of the body: decoded in place, never copied
        items = self.ingestor.decode_many(raws)
        result = await self.ingestor.ingest_async(
            self._request(scope, source, None, batch), items, raws
        )
        status = 400 if result.refused and result.accepted == 0 else 200
        await send_json(
            send,
            status,
            {
                "success": status == 200,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "refused": result.refused,
            },
            cors,
        )

    # -- SDK settings ------------------------------------------------------------------------

    async def _settings(
        self, scope: Scope, send: Send, cors: list[tuple[bytes, bytes]], write_key: str
    ) -> None:
        if self.ingestor.catalog.authenticate(write_key) is None:
            await send_json(
                send, 404, {"code": "unknown_write_key", "message": "unknown write key"}, cors
            )
            return
        host = (header(scope, b"host") or b"localhost").decode("latin-1")
        await send_json(
            send, 200, segment_settings(write_key, host, scope.get("scheme", "http")), cors
        )

    async def _source_config(
        self, scope: Scope, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        key = basic_user(header(scope, b"authorization")) or _query_param(scope, "writeKey")
        source = self.ingestor.catalog.authenticate(key)
        if source is None or key is None:
            raise Unauthorized("a valid write key is required")
        await send_json(send, 200, rudderstack_source_config(source.id, source.name, key), cors)


def _route_path(path: str) -> str:
    path = path.strip("/")
    if path.startswith("beacon/"):  # RudderStack's sendBeacon transport
        path = path[len("beacon/") :]
    if path == "v1":
        return ""
    return path[3:] if path.startswith("v1/") else path


def _query_param(scope: Scope, name: str) -> str | None:
    if not scope.get("query_string"):
        return None
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None
