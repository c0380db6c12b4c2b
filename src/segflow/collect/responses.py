"""HTTP statuses for segflow's errors, in one place.

>>> from segflow.collect.exceptions import PayloadTooLarge
>>> error_response(PayloadTooLarge("max_batch_bytes", 10), 1)[0]
413
"""

from __future__ import annotations

from typing import Any

from segflow.collect.exceptions import PayloadTooLarge, RateLimited, Unauthorized
from segflow.errors import (
    ConflictError,
    NotFoundError,
    SegflowError,
    TransientError,
    ValidationError,
)
from segflow.log.exceptions import LogBackpressure

Headers = list[tuple[bytes, bytes]]


def status_of(exc: SegflowError) -> int:
    """The HTTP status of an error."""
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, LogBackpressure | RateLimited):
        return 429
    if isinstance(exc, TransientError):
        return 503
    return 400


def error_response(
    exc: SegflowError, default_retry_after_s: int
) -> tuple[int, dict[str, Any], Headers]:
    """``(status, body, extra headers)`` for an error."""
    status = status_of(exc)
    body = {"success": False, **exc.to_dict()}
    headers: Headers = []
    if isinstance(exc, TransientError):
        retry = max(1, round(exc.retry_after_s or default_retry_after_s))
        headers.append((b"retry-after", str(retry).encode()))
    return status, body, headers
