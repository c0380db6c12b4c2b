"""Retry decisions: what an HTTP answer means, and when to try again.

- 2xx: delivered.
- 408, 429, 5xx, timeouts, connection errors, redirects (never followed): retried with
  exponential backoff and jitter, ``Retry-After`` honoured, until the horizon; then dead.
- 410: the destination is disabled (its queue is kept) and the operator is told.
- other 4xx: not retried; the change is dead-lettered at once.

>>> classify(204, {})
>>> type(classify(503, {"retry-after": "7"})).__name__
'RetryableDeliveryError'
>>> classify(503, {"retry-after": "7"}).retry_after_s
7.0
>>> backoff_ms(attempt=3, base_ms=1000, max_ms=60_000, jitter=1.0)
4000
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from segflow.activate.exceptions import (
    DestinationGoneError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)

DeliveryError = RetryableDeliveryError | RejectedDeliveryError


def parse_retry_after(value: str | None, now_ms: int) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    >>> parse_retry_after("120", 0)
    120.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", 10_000)
    20.0
    >>> parse_retry_after("soon", 0) is None
    True
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now_ms / 1000)


def classify(status: int, headers: Mapping[str, str], now_ms: int = 0) -> DeliveryError | None:
    """``None`` for success, else the error that says whether to retry."""
    if 200 <= status < 300:
        return None
    if status == 410:
        return DestinationGoneError("the receiver answered 410 Gone", status=status)
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(headers.get("retry-after"), now_ms)
        return RetryableDeliveryError(f"HTTP {status}", status=status, retry_after_s=retry_after)
    if 300 <= status < 400:
        where = headers.get("location", "?")
        return RetryableDeliveryError(
            f"HTTP {status} redirect to {where} (not followed)", status=status
        )
    return RejectedDeliveryError(f"HTTP {status}", status=status)


def backoff_ms(*, attempt: int, base_ms: int, max_ms: int, jitter: float) -> int:
    """Delay before attempt ``attempt + 1``: ``base * 2**(attempt-1)``, capped, times ``jitter``.

    ``jitter`` is drawn from [0.5, 1.0] by the caller ("equal jitter").
    """
    exp = min(max_ms, base_ms * (2 ** max(0, min(attempt - 1, 40))))
    return int(exp * jitter)


def next_attempt_ms(
    error: RetryableDeliveryError,
    *,
    now_ms: int,
    attempt: int,
    base_ms: int,
    max_ms: int,
    jitter: float,
) -> int:
    """When to try again: the backoff, or ``Retry-After`` when the receiver asks for longer."""
    delay = backoff_ms(attempt=attempt, base_ms=base_ms, max_ms=max_ms, jitter=jitter)
    if error.has_retry_after:
        delay = max(delay, int(error.retry_after_s * 1000))
    return now_ms + delay
