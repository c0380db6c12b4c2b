"""What every admin API module shares: the error shape, JSON bodies, one endpoint shape.

Every error of ``/api/v1`` has one shape (the Segment-compatible ``/v1/*`` collection routes
keep Segment's own)::

    {"error": {"code": "validation_error", "message": "limit: must be between 1 and 500",
               "details": {"field": "limit", "reason": "must be between 1 and 500"}}}

``code`` is stable and machine-readable, ``message`` is for people, ``details`` is always an
object: ``field`` and ``reason`` for bad input, ``errors`` (every diagnostic with line and
column) for a rule that does not compile, ``request_id`` for an unexpected failure. Status
codes are mapped here, from the marker types of ``segflow.errors``:

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

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from segflow.api.auth import Authorize
from segflow.collect.exceptions import PayloadTooLarge, RateLimited
from segflow.errors import (
    ConflictError,
    NotFoundError,
    SegflowError,
    TransientError,
    ValidationError,
)
from segflow.telemetry.logs import REQUEST_ID

log = logging.getLogger(__name__)

Call = Callable[[Request, dict[str, Any]], Any]
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


def internal_error(request: Request, exc: BaseException, code: str = "internal_error") -> Response:
    """A last resort: an unexpected failure, logged with a request id the client also gets."""
    request_id = REQUEST_ID.get()  # set by the serve app's middleware (also in the header)
    headers = None
    if request_id is None:
        request_id = secrets.token_hex(8)
        headers = {"X-Request-ID": request_id}
    log.error(
        "%s %s failed (request %s)", request.method, request.url.path, request_id, exc_info=exc
    )
    message = f"{type(exc).__name__}: {exc}" if code != "internal_error" else "internal error"
    return refusal(500, code, message, {"request_id": request_id}, headers)


async def answer(
    request: Request, work: Callable[[], Awaitable[Any]], *, status: int = 200, failure: str = ""
) -> Response:
    """Run ``work`` and answer its result as JSON, or any error in the stable shape.

    ``failure`` names the code of an unexpected exception (default ``internal_error``).
    """
    try:
        result = await work()
        if isinstance(result, Response):
            return result
        return JSONResponse(msgspec.to_builtins(result), status_code=status)
    except HTTPException as exc:
        return http_error(exc)
    except SegflowError as exc:
        return error_response(exc)
    except Exception as exc:
        return internal_error(request, exc, failure or "internal_error")


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` for GET/DELETE or an empty body)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return {}
    raw = await request.body()
    try:
        body = msgspec.json.decode(raw) if raw else {}
    except msgspec.DecodeError as exc:
        raise ValidationError("body", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationError("body", "JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise ValidationError("body", "expected a JSON object")
    return body


def actor(request: Request) -> str:
    """Who makes this request, for the audit log: ``token:<id> (<name>)``."""
    info = getattr(request.state, "token", None)
    if info is None:
        return "anonymous"
    return f"token:{info.token_id}" + (f" ({info.name})" if info.name else "")


def query_int(
    request: Request, name: str, default: int, *, low: int = 0, high: int = 10_000
) -> int:
    """An integer query parameter within ``[low, high]``."""
    raw = request.query_params.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError as exc:
        raise ValidationError(name, "expected an integer") from exc
    if not low <= value <= high:
        raise ValidationError(name, f"must be between {low} and {high}")
    return value


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter: ``true``/``1``/``yes`` or ``false``/``0``/``no``.

    >>> from starlette.requests import Request
    >>> query_bool(Request({"type": "http", "query_string": b"as_recorded=true"}), "as_recorded")
    True
    """
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValidationError(name, "expected true or false")


def endpoint(
    authorize: Authorize, role: str, fn: Call, *, status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that authorizes ``role``, decodes the body and runs ``fn`` in a thread."""

    async def handle(request: Request) -> Response:
        async def work() -> Any:
            await authorize(request, role)
            body = await json_body(request)
            return await run_in_threadpool(fn, request, body)

        return await answer(request, work, status=status)

    return handle
