"""The HTTP side of API tokens: the bearer token of a request, and ``authorizer``, which
refuses a request whose token is missing, unknown or of too low a role. The tokens themselves,
their roles (``read`` < ``editor`` < ``admin``) and their store live in
:mod:`segflow.catalog.tokens`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request

from segflow.catalog.tokens import TokenInfo


class TokenVerifier(Protocol):
    """What the API needs of a token store."""

    def verify(self, token: str) -> TokenInfo | None: ...


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (or ``X-API-Token``), if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-token")


Authorize = Callable[[Request, str], Awaitable[None]]


class Refused(HTTPException):
    """A 401 or 403 with ``details`` for the error body (``segflow.api.common``)."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        headers: dict[str, str] | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail, headers)
        self.details = details or {}


def authorizer(tokens: TokenVerifier) -> Authorize:
    """An ``authorize(request, role)`` coroutine: raises :class:`Refused` 401 (no or bad token)
    or 403 (role too low); sets ``request.state.token`` on success."""

    async def authorize(request: Request, role: str) -> None:
        token = bearer_token(request)
        info = None if token is None else tokens.verify(token)
        if info is None:
            raise Refused(401, "a valid API token is required", {"WWW-Authenticate": "Bearer"})
        if not info.allows(role):
            raise Refused(
                403,
                f"this token's role ({info.role}) cannot do this (needs {role})",
                details={"role": info.role, "needs": role},
            )
        request.state.token = info

    return authorize
