from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from segflow.api.auth import TokenStore, authorizer
from segflow.errors import ValidationError


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "catalog.sqlite")


def test_tokens_are_stored_hashed_and_roles_ordered(tokens: TokenStore, tmp_path: Path) -> None:
    token = tokens.create("admin", name="ops")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("catalog.sqlite*"))
    secret = token.split("_", 2)[2]
    assert secret.encode() not in raw
    assert hashlib.sha256(secret.encode()).digest() in raw
    info = tokens.verify(token)
    assert info is not None and info.name == "ops" and info.allows("editor")
    assert tokens.verify("sft_nope_x") is None and tokens.verify("garbage") is None
    assert tokens.revoke(info.token_id) and tokens.verify(token) is None
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
