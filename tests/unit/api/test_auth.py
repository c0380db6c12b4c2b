from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.support.wait import until

from segflow.api.auth import CachedTokens, authorizer
from segflow.catalog.db import CatalogTarget
from segflow.catalog.tokens import TokenInfo, TokenStore
from segflow.errors import ValidationError


@pytest.fixture
def tokens(catalog_target: CatalogTarget) -> Iterator[TokenStore]:
    store = TokenStore(catalog_target)
    yield store
    store.close()


def _stored(tokens: TokenStore, catalog_target: CatalogTarget) -> bytes:
    """Every byte the catalog holds: the SQLite files, or the rows of the shared table."""
    if isinstance(catalog_target, Path):
        return b"".join(p.read_bytes() for p in catalog_target.parent.glob("catalog.sqlite*"))
    rows = tokens.con.execute("SELECT * FROM api_tokens").fetchall()
    return b"".join(v if isinstance(v, bytes) else str(v).encode() for r in rows for v in r)


def test_tokens_are_stored_hashed_and_roles_ordered(
    tokens: TokenStore, catalog_target: CatalogTarget
) -> None:
    token = tokens.create("admin", name="ops")
    raw = _stored(tokens, catalog_target)
    secret = token.split("_", 2)[2]
    assert secret.encode() not in raw
    assert hashlib.sha256(secret.encode()).digest() in raw
    info = tokens.verify(token)
    assert info is not None and info.name == "ops" and info.allows("editor")
    assert tokens.verify("sft_nope_x") is None and tokens.verify("garbage") is None
    assert tokens.revoke(info.token_id) and tokens.verify(token) is None
    assert not tokens.revoke(info.token_id)  # already revoked
    listed = tokens.list()
    assert [(t.token_id, t.role, t.name) for t in listed] == [(info.token_id, "admin", "ops")]
    assert listed[0].revoked_ms is not None and tokens.get(info.token_id) == listed[0]
    with pytest.raises(ValidationError):
        tokens.create("root")
    tokens.close()


def test_authorizer_requires_role(tokens: TokenStore) -> None:
    authorize = authorizer(tokens)

    async def admin_only(request: Request) -> JSONResponse:
        await authorize(request, "admin")
        return JSONResponse({"role": request.state.token.role})

    app = Starlette(routes=[Route("/x", admin_only)])
    read, admin = tokens.create("read"), tokens.create("admin")

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                await client.get("/x"),
                await client.get("/x", headers={"Authorization": f"Bearer {read}"}),
                await client.get("/x", headers={"Authorization": f"Bearer {admin}"}),
                await client.get("/x", headers={"X-API-Token": admin}),
            ]

    none, low, ok, alt = asyncio.run(calls())
    assert (none.status_code, low.status_code, alt.status_code) == (401, 403, 200)
    assert none.headers["www-authenticate"] == "Bearer"
    assert ok.json() == {"role": "admin"}
    tokens.close()


def test_ended_console_sessions_are_kept_until_their_cookie_expires(tokens: TokenStore) -> None:
    tokens.end_session("gone", expires_ms=1)  # already expired: dropped at the next end
    tokens.end_session("live", expires_ms=2**62)
    tokens.end_session("live", expires_ms=2**62)  # a second logout of the same session
    assert tokens.session_ended("live") and not tokens.session_ended("other")
    kept = tokens.con.execute("SELECT session_id FROM console_sessions_ended").fetchall()
    assert [r[0] for r in kept] == ["live"]


class CountingStore:
    """The real store, counting its checks (each one a catalog query and a SHA-256)."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.checks = 0

    def verify(self, token: str) -> TokenInfo | None:
        self.checks += 1
        return self.store.verify(token)


def _statuses(verifier: CachedTokens, tokens: list[str | None]) -> list[int]:
    """One request to a route needing ``read`` per token (None: no header)."""
    authorize = authorizer(verifier)

    async def readable(request: Request) -> JSONResponse:
        await authorize(request, "read")
        return JSONResponse({})

    app = Starlette(routes=[Route("/x", readable)])

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                (
                    await client.get("/x", headers={} if t is None else {"X-API-Token": t})
                ).status_code
                for t in tokens
            ]

    return asyncio.run(calls())


def test_a_verified_token_is_checked_once_per_cache_interval(tokens: TokenStore) -> None:
    counting = CountingStore(tokens)
    cached = CachedTokens(counting, ttl_s=3_600)
    token = tokens.create("read")
    assert _statuses(cached, [token] * 5) == [200] * 5
    assert counting.checks == 1  # the other four were served from the cache
    assert _statuses(cached, [token + "x", token + "x", None]) == [401, 401, 401]
    assert counting.checks == 3  # a bad token is checked every time, never remembered
    assert len(cached) == 1


def test_a_token_revoked_elsewhere_is_refused_within_the_cache_interval(
    tokens: TokenStore,
) -> None:
    cached = CachedTokens(tokens, ttl_s=0.2)
    token = tokens.create("read")
    assert _statuses(cached, [token]) == [200]
    info = tokens.verify(token)
    assert info is not None and tokens.revoke(info.token_id)  # as another process would
    until(lambda: _statuses(cached, [token]) == [401], 10, "the revoked token refused")
    assert len(cached) == 0


def test_a_token_revoked_through_this_process_is_forgotten_at_once(tokens: TokenStore) -> None:
    cached = CachedTokens(tokens, ttl_s=3_600)
    token = tokens.create("read")
    assert _statuses(cached, [token]) == [200]
    info = tokens.verify(token)
    assert info is not None and tokens.revoke(info.token_id)
    cached.forget(info.token_id)  # what DELETE /api/v1/tokens/{id} does
    assert _statuses(cached, [token]) == [401]


def test_the_cache_holds_at_most_its_size(tokens: TokenStore) -> None:
    counting = CountingStore(tokens)
    cached = CachedTokens(counting, ttl_s=3_600, max_size=2)
    first, second, third = (tokens.create("read") for _ in range(3))
    assert _statuses(cached, [first, second, third, third, first]) == [200] * 5
    assert len(cached) == 2 and counting.checks == 4  # first left, checked again
