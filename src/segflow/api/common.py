"""What every admin API module shares: JSON bodies, one endpoint shape, the answer to an
unexpected failure. The error shape and its status codes: :mod:`segflow.serving.errors`
(the console answers with the same).

>>> from segflow.errors import ValidationError
>>> error_response(ValidationError("limit", "must be positive")).status_code
400
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
from segflow.errors import SegflowError, ValidationError
from segflow.serving.errors import error_response, http_error, refusal
from segflow.telemetry.logs import REQUEST_ID

log = logging.getLogger(__name__)

Call = Callable[[Request, dict[str, Any]], Any]


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
