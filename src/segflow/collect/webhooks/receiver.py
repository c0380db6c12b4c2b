"""``/v1/webhooks/{vendor}``: authenticate a delivery, run its adapter, ingest its messages.

A delivery names its source by a write key (HTTP Basic user or ``?writeKey=``) or by the
vendor's own secret alone: without a key, every source configured for the vendor is tried
and the one whose secret verifies the signature takes the delivery. Then:

- a bad or missing signature, a timestamp outside the replay window: 401;
- a body that is not the vendor's format: a dead letter, 400;
- an item no table maps (an event type segflow does not know): a dead letter with the reason,
  and the delivery is still acknowledged (200), so the vendor does not retry it for days;
- a vendor's retry of a delivery: the same message ids (from the vendor's event id), so the
  log's dedupe stores it once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import parse_qsl

import msgspec

from segflow.clock import Clock
from segflow.collect.asgi import Headers, Receive, Scope, Send, header, read_body, send_json
from segflow.collect.auth import basic_user
from segflow.collect.catalog import Source
from segflow.collect.exceptions import Unauthorized
from segflow.collect.ingest import Ingestor, Request
from segflow.collect.limits import TokenBuckets
from segflow.collect.webhooks import (
    generic,
    hubspot,
    mailchimp,
    salesforce,
    sendgrid,
    stripe,
    zendesk,
)
from segflow.collect.webhooks.base import Adapter, Answer
from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery
from segflow.collect.webhooks.exceptions import BadSignature, UnknownVendor, Unmapped
from segflow.errors import SegflowError, TransientError
from segflow.spec.exceptions import InvalidMessage
from segflow.spec.wire import WireMessage, convert_message

logger = logging.getLogger("segflow.collect.webhooks")

ADAPTERS: dict[str, Adapter] = {
    a.vendor: a
    for a in (
        stripe.ADAPTER,
        zendesk.ADAPTER,
        hubspot.ADAPTER,
        salesforce.ADAPTER,
        sendgrid.ADAPTER,
        mailchimp.ADAPTER,
        generic.ADAPTER,
    )
}


class Cipher(Protocol):
    """Decrypts stored vendor secrets (``segflow.activate.secretbox.SecretBox``)."""

    def decrypt(self, token: str) -> str: ...


class WebhookSources:
    """The sources configured for webhooks, with their secrets decrypted, re-read from the
    catalog every ``ttl_s`` (so a source configured by the CLI is picked up while serving)."""

    def __init__(self, ingestor: Ingestor, cipher: Cipher | None, *, ttl_s: float = 5.0) -> None:
        self.catalog = ingestor.catalog
        self.cipher = cipher
        self.ttl_s = ttl_s
        self._read_at = -ttl_s
        self._sources: list[Source] = []
        self._secrets: dict[str, str] = {}

    def _fresh(self) -> list[Source]:
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s:
            self._sources = [s for s in self.catalog.list() if s.config.webhook is not None]
            self._read_at = now
        return self._sources

    def of_vendor(self, vendor: str) -> Iterator[tuple[Source, WebhookConfig]]:
        for source in self._fresh():
            webhook = source.config.webhook
            if webhook is not None and webhook.vendor == vendor:
                yield source, webhook

    def by_id(self, source_id: str) -> Source | None:
        return next((s for s in self._fresh() if s.id == source_id), None)

    def secret(self, webhook: WebhookConfig) -> str | None:
        token = webhook.encrypted_secret
        if not token:
            return None
        if token not in self._secrets:
            if self.cipher is None:
                raise Unauthorized("this server has no secrets key to read webhook secrets")
            try:
                self._secrets[token] = self.cipher.decrypt(token)
            except SegflowError as exc:  # a server problem: the vendor should retry later
                logger.error("cannot decrypt a webhook secret: %s", exc)
                raise TransientError(
                    "cannot read the source's webhook secret (is activate.secrets_key the key"
                    " it was stored with?)",
                    retry_after_s=60,
                ) from None
        return self._secrets[token]


class WebhookReceiver:
    """Handles ``/v1/webhooks/{vendor}`` for the collector app (see the module docstring)."""

    def __init__(
        self,
        ingestor: Ingestor,
        *,
        clock: Clock,
        limits: TokenBuckets,
        cipher: Cipher | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.clock = clock
        self.limits = limits
        self.sources = WebhookSources(ingestor, cipher)

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, cors: Headers, vendor: str
    ) -> None:
        adapter = ADAPTERS.get(vendor)
        if adapter is None:
            raise UnknownVendor(
                f"no webhook adapter {vendor!r}; known: {', '.join(ADAPTERS)}",
                details={"vendor": vendor, "known": list(ADAPTERS)},
            )
        method = scope["method"]
        if method != "POST" and not (vendor == "mailchimp" and method in ("GET", "HEAD")):
            await send_json(send, 405, {"code": "method_not_allowed", "message": "POST"}, cors)
            return
        limit = self.ingestor.settings.max_batch_bytes
        body = await read_body(scope, receive, limit, "max_batch_bytes")
        delivery = _delivery(scope, vendor, body, self.clock.now_ms())
        source, webhook = self._authenticate(scope, delivery, adapter)
        if method != "POST":  # Mailchimp checks a URL with a GET before it saves it
            await send_json(send, 200, {"success": True}, cors)
            return
        client = scope.get("client")
        request = Request(
            source=source, received_at_ms=delivery.received_at_ms, ip=client[0] if client else None
        )
        summary = await self._ingest(request, delivery, adapter, webhook)
        await _send(send, adapter.answer(summary), cors)

    async def _ingest(
        self, request: Request, delivery: Delivery, adapter: Adapter, webhook: WebhookConfig
    ) -> dict[str, Any]:
        """Map the delivery and store its messages; the summary the vendor gets back."""
        try:
            found = adapter.items(delivery, webhook)
            if not found:
                raise Unmapped("", f"no {adapter.vendor} event in the payload")
        except Unmapped as exc:
            await self.ingestor.dead_letter_async(request, delivery.body, exc)
            raise
        self.limits.take(request.source.id, len(found))
        items = [_wire(outcome) for outcome, _ in found]
        result = await self.ingestor.ingest_async(request, items, [raw for _, raw in found])
        return {
            "success": True,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "deadLettered": msgspec.to_builtins(result.refused),
        }

    def _authenticate(
        self, scope: Scope, delivery: Delivery, adapter: Adapter
    ) -> tuple[Source, WebhookConfig]:
        """The source whose write key came with the delivery, or whose secret verifies it."""
        key = basic_user(header(scope, b"authorization")) or delivery.query.get("writeKey")
        now_ms = delivery.received_at_ms
        if key:
            keyed = self.ingestor.catalog.authenticate(key)
            source = self.sources.by_id(keyed.id) if keyed is not None else None
            webhook = source.config.webhook if source is not None else None
            if source is None or webhook is None or webhook.vendor != adapter.vendor:
                raise Unauthorized(f"the write key is not a {adapter.vendor} webhook source's")
            adapter.verify(delivery, webhook, self.sources.secret(webhook), now_ms)
            return source, webhook
        refusal: BadSignature | None = None
        for source, webhook in self.sources.of_vendor(adapter.vendor):
            secret = self.sources.secret(webhook)
            if adapter.needs_secret and not secret:
                continue  # such a source is reached only with its write key
            try:
                adapter.verify(delivery, webhook, secret, now_ms)
            except BadSignature as exc:
                refusal = exc
                continue
            return source, webhook
        if refusal is not None:
            raise refusal
        raise Unauthorized(
            f"no source takes {adapter.vendor} webhooks without a write key"
            " (configure one: segflow sources webhook)"
        )


async def _send(send: Send, answer: Answer, cors: Headers) -> None:
    status, content_type, payload = answer
    headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *cors]})
    await send({"type": "http.response.body", "body": payload})


def _wire(outcome: dict[str, Any] | Unmapped) -> WireMessage | InvalidMessage:
    if isinstance(outcome, Unmapped):
        return InvalidMessage(outcome.field, outcome.reason)
    try:
        return convert_message(outcome)
    except InvalidMessage as exc:
        return exc


def _delivery(scope: Scope, vendor: str, body: bytes, now_ms: int) -> Delivery:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query_string = scope.get("query_string", b"").decode("latin-1")
    scheme = headers.get("x-forwarded-proto") or scope.get("scheme", "http")
    host = headers.get("x-forwarded-host") or headers.get("host", "localhost")
    path = scope.get("root_path", "") + scope["path"]
    url = f"{scheme}://{host}{path}" + (f"?{query_string}" if query_string else "")
    return Delivery(
        vendor=vendor,
        method=scope["method"],
        url=url,
        body=body,
        received_at_ms=now_ms,
        headers=headers,
        query=dict(parse_qsl(query_string, keep_blank_values=True)),
    )
