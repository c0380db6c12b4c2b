"""Calling the admin API app in process (``httpx.ASGITransport``), as a client would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

Call = Callable[..., httpx.Response]


def _call(app: Any, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://segflow") as client:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await client.request(method, path, headers=headers, **kw)

    return asyncio.run(go())


@pytest.fixture(scope="session")
def call() -> Call:
    """``call(app, method, path, token=None, **httpx_kwargs) -> httpx.Response``."""
    return _call
