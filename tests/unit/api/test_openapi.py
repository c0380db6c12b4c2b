"""The OpenAPI document covers exactly the admin API's routes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from segflow.api.openapi import OPERATIONS, normalise
from segflow.config import load_settings
from segflow.server.compose import assemble
from segflow.serving.runtime import Runtime


def test_every_route_is_documented_and_every_entry_is_a_route(tmp_path: Path) -> None:
    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp_path)}}))
    parts = assemble(runtime)
    try:
        api = parts.mounts["/api"].app  # type: ignore[attr-defined]
        served = {
            (m, normalise(r.path))
            for r in api.routes
            for m in getattr(r, "methods", None) or ()
            if m != "HEAD"
        }
        assert served == set(OPERATIONS)
        doc, page = asyncio.run(_fetch(api))
        assert doc["openapi"] == "3.1.0"
        split = doc["paths"]["/api/v1/profiles/{ident}/split"]["post"]
        assert "admin" in split["description"] and split["parameters"][0]["name"] == "ident"
        assert doc["paths"]["/api/v1/health"]["get"]["security"] == []
        assert "/api/v1/segments/{name}/members" in page
    finally:
        parts.services[0].stop()  # the stores' closer
        runtime.close()


async def _fetch(app: Any) -> tuple[dict[str, Any], str]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://segflow") as client:
        doc = (await client.get("/api/v1/openapi.json")).json()
        page = (await client.get("/api/v1/docs")).text
    return doc, page
