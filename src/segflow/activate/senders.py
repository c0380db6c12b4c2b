"""How a batch of queued deliveries reaches a webhook: body, Standard Webhooks headers, answer.

One request carries one change (``batch_max == 1``) or up to ``batch_max`` changes as
``{"type": "batch", "timestamp": ..., "data": [payload, ...]}``. A single change's
``webhook-id`` is its own idempotency key; a batch's is derived from the set of its members'
keys (and every member payload keeps its own). A batch's membership is frozen before its
first attempt (:meth:`~segflow.activate.deliveries.DeliveryQueue.freeze`), so its retries
carry the same changes under the same id. Each attempt gets a fresh ``webhook-timestamp``
and signature. Redirects are never followed; the SSRF guard runs in the connection pool's
network backend (:func:`~segflow.activate.ssrf.pinned_pool`) for every connection.

Requests go straight to an ``httpcore`` connection pool (what httpx runs on): measured here,
one POST cost ~1.1 ms of CPU through ``httpx.Client``, ~0.8 ms through its transport and
~0.6 ms through ``httpcore`` (cookies, auth and redirect machinery segflow does not use), and
unbatched delivery is bound by that cost. Tests pass any object with the same ``request``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpcore
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

USER_AGENT = "segflow-webhooks/1"
SecretSource = Callable[[str], list[str]]
_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


class RequestPool(Protocol):
    """What sends the requests: an ``httpcore.ConnectionPool`` (or a test double)."""

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        content: bytes,
        extensions: dict[str, Any],
    ) -> httpcore.Response: ...

    def close(self) -> None: ...


def batch_id(deliveries: Sequence[Delivery]) -> str:
    """The ``webhook-id`` of a request: the change's own, or one named by the set of a batch's.

    >>> from segflow.activate.models import Delivery
    >>> def d(wid): return Delivery(id=0, destination="d", profile_id="p", webhook_id=wid,
    ...     segment="s", kind="entered", sequence=1, at_ms=0, payload={}, status="pending",
    ...     attempts=0, created_ms=0)
    >>> batch_id([d("msg_a")]), batch_id([d("msg_a"), d("msg_b")]) == batch_id([d("msg_b"), d("msg_a")])
    ('msg_a', True)
    """
    if deliveries[0].batch_key is not None:
        return deliveries[0].batch_key
    if len(deliveries) == 1:
        return deliveries[0].webhook_id
    digest = hashlib.sha256("|".join(sorted(d.webhook_id for d in deliveries)).encode())
    return "batch_" + digest.hexdigest()[:32]


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
        self, pool: RequestPool, secrets: SecretSource, *, wall_s: Callable[[], float] = time.time
    ) -> None:
        self.pool = pool
        self.secrets = secrets
        self.wall_s = wall_s

    def send(self, dest: Destination, deliveries: Sequence[Delivery]) -> int:
        """Send one request (blocking: run it in the destination's threads); returns the status."""
        if not dest.url:
            raise InvalidDestinationError("url", "a webhook destination needs a url")
        now_s = int(self.wall_s())
        body = request_body(deliveries, now_s * 1000)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **dest.headers,
            **sign_headers(self.secrets(dest.name), batch_id(deliveries), now_s, body),
        }
        timeout_s = dest.timeout_ms / 1000
        limits = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        try:
            response = self.pool.request(
                "POST",
                dest.url,
                headers=list(headers.items()),
                content=body,
                extensions={"timeout": limits},
            )
        except httpcore.TimeoutException as exc:
            raise RetryableDeliveryError(
                f"timeout after {dest.timeout_ms} ms: {type(exc).__name__}"
            ) from exc
        except _ERRORS as exc:
            raise RetryableDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        except UnsafeUrlError as exc:  # DNS may answer differently later: retried
            raise RetryableDeliveryError(exc.message, details=exc.details) from exc
        error = classify(response.status, _headers(response.headers), now_s * 1000)
        if error is not None:
            raise error
        return response.status


def _headers(raw: Sequence[tuple[bytes, bytes]]) -> Mapping[str, str]:
    """The response headers the retry policy reads (names lower-cased)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
