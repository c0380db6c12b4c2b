"""What every admin API module shares: the status of an error, JSON bodies, one endpoint shape.

Status codes are mapped here, from the marker types of ``segflow.errors``:

==================  ======
ValidationError     400 (with ``field``, ``reason`` and, for rules, every diagnostic)
NotFoundError       404
ConflictError       409
TransientError      503
other SegflowError  400
==================  ======

>>> from segflow.errors import NotFoundError
>>> status_for(NotFoundError("no segment x"))
404
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from segflow.api.auth import Authorize
from segflow.errors import (
    ConflictError,
    NotFoundError,
    SegflowError,
    TransientError,
    ValidationError,
)

Call = Callable[[Request, dict[str, Any]], Any]
_STATUS: tuple[tuple[type[SegflowError], int], ...] = (
    (ValidationError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (TransientError, 503),
)


def status_for(exc: SegflowError, *, validation: int = 400) -> int:
    """The HTTP status of a segflow error (``validation``: the destination and model routes
    answer 422 for bad input, kept for compatibility)."""
    if isinstance(exc, ValidationError):
        return validation
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` for GET/DELETE or an empty body)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return {}
    raw = await request.body()
    body = msgspec.json.decode(raw) if raw else {}
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


def endpoint(
    authorize: Authorize, role: str, fn: Call, *, status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that authorizes ``role``, decodes the body and runs ``fn`` in a thread."""

    async def handle(request: Request) -> Response:
        try:
            await authorize(request, role)
            body = await json_body(request)
            result = await run_in_threadpool(fn, request, body)
            return JSONResponse(msgspec.to_builtins(result), status_code=status)
        except HTTPException as exc:
            code = "unauthorized" if exc.status_code == 401 else "forbidden"
            return JSONResponse(
                {"code": code, "message": exc.detail},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        except SegflowError as exc:
            return JSONResponse(exc.to_dict(), status_code=status_for(exc))
        except msgspec.DecodeError as exc:
            return JSONResponse(ValidationError("body", str(exc)).to_dict(), status_code=400)

    return handle
