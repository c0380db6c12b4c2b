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

from segflow.api.auth import authorizer
from segflow.catalog.db import CatalogTarget
from segflow.catalog.tokens import TokenStore
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
