"""How a batch of queued deliveries reaches a webhook: body, Standard Webhooks headers, answer.

One request carries one change (``batch_max == 1``) or up to ``batch_max`` changes as
``{"type": "batch", "timestamp": ..., "data": [payload, ...]}``. A single change's
``webhook-id`` is its own idempotency key; a batch's is derived from its members' keys (and
every member payload keeps its own). Each attempt gets a fresh ``webhook-timestamp`` and
signature. Redirects are never followed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import msgspec

from segflow.activate.exceptions import (
    InvalidDestinationError,
    RetryableDeliveryError,
    UnsafeUrlError,
)
from segflow.activate.models import Delivery, Destination
from segflow.activate.payloads import iso
from segflow.activate.policy import classify
from segflow.activate.signing import sign_headers
from segflow.activate.ssrf import UrlGuard

USER_AGENT = "segflow-webhooks/1"
SecretSource = Callable[[str], list[str]]


def batch_id(deliveries: Sequence[Delivery]) -> str:
    """The ``webhook-id`` of a request: the change's own, or one derived from a batch's."""
    if len(deliveries) == 1:
        return deliveries[0].webhook_id
    digest = hashlib.sha256("|".join(d.webhook_id for d in deliveries).encode()).hexdigest()
    return "batch_" + digest[:32]


def request_body(deliveries: Sequence[Delivery], now_ms: int) -> bytes:
    """The JSON body of one request."""
    if len(deliveries) == 1:
        return msgspec.json.encode(deliveries[0].payload)
    batch: dict[str, Any] = {
        "type": "batch",
        "timestamp": iso(now_ms),
        "data": [d.payload for d in deliveries],
    }
    return msgspec.json.encode(batch)


class WebhookSender:
    """POSTs signed requests; raises the error that says whether to retry.

    ``secrets(destination_name)`` returns the live signing secrets, newest first.
    """

    def __init__(
        self,
        client: httpx.Client,
        guard: UrlGuard,
        secrets: SecretSource,
        *,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.guard = guard
        self.secrets = secrets
        self.wall_s = wall_s

    def send(self, dest: Destination, deliveries: Sequence[Delivery]) -> int:
        """Send one request (blocking: run it in the destination's threads); returns the status."""
        if not dest.url:
            raise InvalidDestinationError("url", "a webhook destination needs a url")
        self._check_url(dest.url)
        now_s = int(self.wall_s())
        body = request_body(deliveries, now_s * 1000)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **dest.headers,
            **sign_headers(self.secrets(dest.name), batch_id(deliveries), now_s, body),
        }
        try:
            response = self.client.post(
                dest.url,
                content=body,
                headers=headers,
                timeout=dest.timeout_ms / 1000,
                follow_redirects=False,
            )
        except httpx.TimeoutException as exc:
            raise RetryableDeliveryError(
                f"timeout after {dest.timeout_ms} ms: {type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise RetryableDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        error = classify(response.status_code, response.headers, now_s * 1000)
        if error is not None:
            raise error
        return response.status_code

    def _check_url(self, url: str) -> None:
        try:
            self.guard.check(url)
        except UnsafeUrlError as exc:
            raise RetryableDeliveryError(exc.message, details=exc.details) from exc
        except InvalidDestinationError as exc:
            raise RetryableDeliveryError(exc.message) from exc
