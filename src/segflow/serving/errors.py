"""The error shape of the admin API and the console: every error of ``/api/v1`` and
``/console`` has one shape (the Segment-compatible ``/v1/*`` collection routes keep
Segment's own)::

    {"error": {"code": "validation_error", "message": "limit: must be between 1 and 500",
               "details": {"field": "limit", "reason": "must be between 1 and 500"}}}

``code`` is stable and machine-readable, ``message`` is for people, ``details`` is always an
object: ``field`` and ``reason`` for bad input, ``errors`` (every diagnostic with line and
column) for a rule that does not compile, ``request_id`` for an unexpected failure
(``segflow.api.common.internal_error``). Status codes are mapped here, from the marker types of ``segflow.errors``:

===================  ======  ===============================================================
``PayloadTooLarge``  413     a body over ``[api] max_body_bytes`` (``payload_too_large``)
``ValidationError``  400     ``validation_error`` (or a subclass's code)
``NotFoundError``    404
``ConflictError``    409
``RateLimited``      429     with ``Retry-After``
``TransientError``   503     with ``Retry-After``
other SegflowError   400
anything else        500     ``internal_error`` with ``details.request_id`` (logged with it)
===================  ======  ===============================================================

>>> from segflow.errors import NotFoundError, ValidationError
>>> status_for(NotFoundError("no segment x"))
404
>>> error_body(ValidationError("limit", "must be positive"))["error"]["details"]
{'field': 'limit', 'reason': 'must be positive'}
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from segflow.collect.exceptions import PayloadTooLarge, RateLimited
from segflow.errors import (
    ConflictError,
    NotFoundError,
    SegflowError,
    TransientError,
    ValidationError,
)

_STATUS: tuple[tuple[type[SegflowError], int], ...] = (
    (PayloadTooLarge, 413),
    (ValidationError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (RateLimited, 429),
    (TransientError, 503),
)
_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def status_for(exc: SegflowError) -> int:
    """The HTTP status of a segflow error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error_body(exc: SegflowError) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"}}`` of a segflow error."""
    details = dict(exc.details)
    if isinstance(exc, ValidationError):
        details = {"field": exc.field, "reason": exc.reason, **details}
    return {"error": {"code": exc.code, "message": exc.message, "details": details}}


def refusal(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error response of the stable shape, for errors that are not a ``SegflowError``."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: SegflowError) -> JSONResponse:
    """The response of a segflow error (``Retry-After`` on 503)."""
    headers = None
    if isinstance(exc, TransientError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    return JSONResponse(error_body(exc), status_code=status_for(exc), headers=headers)


def http_error(exc: HTTPException) -> JSONResponse:
    """An ``HTTPException`` (401/403 from the authorizer, Starlette's 404/405) as JSON."""
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    details: dict[str, Any] = getattr(exc, "details", None) or {}
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and "allow" in {k.lower() for k in headers}:
        allow = next(v for k, v in headers.items() if k.lower() == "allow")
        details = {"allowed": [m.strip() for m in allow.split(",")]}
    return refusal(exc.status_code, code, str(exc.detail), details, headers or None)
