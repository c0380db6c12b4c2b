"""Errors of the collection API. HTTP statuses are mapped from these in ``collect.responses``.

::

    SegflowError
    ├── ValidationError
    │   ├── spec.exceptions.InvalidMessage     400, names the field
    │   ├── PayloadTooLarge                    413, names the limit
    │   └── PlanViolation                      400 (tracking plan in ``block`` mode)
    ├── Unauthorized                           401 (bad or missing write key)
    ├── NotFoundError
    │   └── UnknownSource                      404 (``segflow sources`` by name)
    ├── ConflictError
    │   └── SourceExists                       409
    └── TransientError (log.exceptions.*)       503 + Retry-After
        ├── RateLimited                        429 + Retry-After (per source, per API token)
        └── Overloaded                         503 + Retry-After (too many requests in flight)
"""

from __future__ import annotations

from typing import Any

from segflow.collect.plans import describe
from segflow.errors import (
    ConflictError,
    NotFoundError,
    SegflowError,
    TransientError,
    ValidationError,
)


class PayloadTooLarge(ValidationError):
    """A body, a message or a batch over a configured limit."""

    code = "payload_too_large"

    def __init__(self, limit: str, allowed: int, *, actual: int | None = None) -> None:
        reason = f"over the {limit} limit of {allowed}"
        details: dict[str, Any] = {"limit": limit, "allowed": allowed}
        if actual is not None:
            details["actual"] = actual
        super().__init__(limit, reason, details=details)
        self.limit = limit


class PlanViolation(ValidationError):
    """A message the source's tracking plan (``block`` mode) refuses: ``found`` is every
    ``(field, reason)``; ``field`` is the first one's (``properties.price``, or ``event`` for an
    event not in the plan), ``reason`` its reason or, with several, every violation.

    >>> exc = PlanViolation([("properties.price", "expected number, got string")])
    >>> exc.field, exc.reason
    ('properties.price', 'expected number, got string')
    """

    code = "tracking_plan_violation"

    def __init__(self, found: list[tuple[str, str]]) -> None:
        violations = [describe(f) for f in found]
        field, reason = found[0]
        if len(found) > 1:
            reason = "; ".join(violations)
        super().__init__(field, reason, details={"violations": violations})
        self.violations = violations


class Unauthorized(SegflowError):
    code = "unauthorized"


class UnknownSource(NotFoundError):
    code = "unknown_source"


class SourceExists(ConflictError):
    code = "source_exists"


class RateLimited(TransientError):
    """A source or an API token over its configured rate (HTTP 429 + ``Retry-After``)."""

    code = "rate_limited"


class Overloaded(TransientError):
    """More requests in flight than ``collect.max_inflight_requests`` (HTTP 503 + ``Retry-After``)."""

    code = "overloaded"
