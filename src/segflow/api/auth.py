"""The HTTP side of API tokens: the bearer token of a request, and ``authorizer``, which
refuses a request whose token is missing, unknown or of too low a role. The tokens themselves,
their roles (``read`` < ``editor`` < ``admin``) and their store live in
:mod:`segflow.catalog.tokens`.

Checking a token costs a catalog query and a SHA-256; :class:`CachedTokens` remembers the
tokens it verified for ``CACHE_S`` seconds (at most ``CACHE_SIZE`` of them), so a client's
requests cost one check per interval. A token revoked elsewhere (another API process, ``segflow
tokens revoke``) is refused within ``CACHE_S``; one revoked through this process's API at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request

from segflow.catalog.tokens import TokenInfo


class TokenVerifier(Protocol):
    """What the API needs of a token store."""

    def verify(self, token: str) -> TokenInfo | None: ...


CACHE_S = 2.0
"""How long a verified token is taken on trust: the longest a revoked one still works."""
CACHE_SIZE = 1_024
"""Verified tokens remembered at most (the oldest checked leaves first)."""


class CachedTokens:
    """A :class:`TokenVerifier` that remembers what ``tokens`` verified for ``ttl_s`` seconds.

    Only valid tokens are remembered (a bad one is checked every time, so guessing fills
    nothing); at most ``max_size``, the one verified longest ago leaving first.

    >>> class Store:
    ...     calls = 0
    ...     def verify(self, token):
    ...         Store.calls += 1
    ...         return TokenInfo("t1", "read", "ci", 0) if token == "good" else None
    >>> now = [0.0]
    >>> tokens = CachedTokens(Store(), ttl_s=2.0, clock=lambda: now[0])
    >>> tokens.verify("good").role, tokens.verify("good").role, tokens.verify("bad"), Store.calls
    ('read', 'read', None, 2)
    >>> now[0] = 2.5; _ = tokens.verify("good"); Store.calls  # past ttl_s: checked again
    3
    """

    def __init__(
        self,
        tokens: TokenVerifier,
        *,
        ttl_s: float = CACHE_S,
        max_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._ttl_s = ttl_s
        self._max_size = max_size
        self._clock = clock
        self._verified: OrderedDict[str, tuple[float, TokenInfo]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._verified)

    def verify(self, token: str) -> TokenInfo | None:
        """The token's info when it is valid and not revoked (as of ``ttl_s`` ago at most)."""
        now = self._clock()
        with self._lock:
            hit = self._verified.get(token)
        if hit is not None and now < hit[0]:
            return hit[1]
        info = self._tokens.verify(token)
        with self._lock:
            if info is None:
                self._verified.pop(token, None)
                return None
            self._verified[token] = (now + self._ttl_s, info)
            self._verified.move_to_end(token)
            while len(self._verified) > self._max_size:
                self._verified.popitem(last=False)
        return info

    def forget(self, token_id: str) -> None:
        """Drop the token ``token_id`` (revoked through this process): refused at once."""
        with self._lock:
            for token in [t for t, (_, i) in self._verified.items() if i.token_id == token_id]:
                del self._verified[token]


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
