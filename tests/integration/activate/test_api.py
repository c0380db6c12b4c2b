"""The ``/api/v1/destinations`` routes on a Starlette app, with a real receiver."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request

from segflow.activate.payloads import DictProfiles
from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore
from segflow.api.destinations import destination_routes


async def admin_only_header(request: Request, role: str) -> None:
    if request.headers.get("x-role") not in (role, "admin"):
        raise HTTPException(403)


class Client:
    """A synchronous face over httpx's ASGI transport (one request per event loop)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"x-role": "admin", **kwargs.pop("headers", {})}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                return await c.request(method, url, headers=headers, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def patch(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)


def client(tmp_path: Path, allow: list[str], resolver: Any = None) -> Client:
    store = DeliveryStore(tmp_path / "delivery.sqlite")
    svc = ActivationService(
        store,
        guard=UrlGuard(allow, resolver=resolver),
        lookup=DictProfiles(members={"vip": ["p1"]}),
    )
    return Client(Starlette(routes=destination_routes(svc, admin_only_header)))


def test_destination_lifecycle(tmp_path: Path, receiver_factory: Any) -> None:
    receiver = receiver_factory()
    api = client(tmp_path, ["127.0.0.1/32"])
    created = api.post(
        "/api/v1/destinations",
        json={
            "name": "crm",
            "url": receiver.url,
            "subscriptions": [{"segment": "vip", "traits": ["plan"]}],
            "initial_sync": True,
        },
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert created.json()["queued"] == 1
    shown = api.get("/api/v1/destinations/crm").json()
    assert shown["stats"]["pending"] == 1 and secret not in str(shown)
    test = api.post("/api/v1/destinations/crm/test").json()
    assert test["ok"] is True and test["status"] == 200
    Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert (
        api.patch("/api/v1/destinations/crm", json={"concurrency": 2}).json()["destination"][
            "concurrency"
        ]
        == 2
    )
    assert api.get("/api/v1/destinations/crm/deliveries").json()["stats"]["pending"] == 1
    assert api.get("/api/v1/destinations/crm/dead-letters").json() == {"dead_letters": []}
    assert api.post("/api/v1/destinations/crm/dead-letters/replay", json={}).json() == {
        "replayed": 0,
        "superseded": 0,
    }
    assert api.get("/api/v1/destinations", headers={"x-role": "read"}).status_code == 200
    assert api.delete("/api/v1/destinations/crm", headers={"x-role": "read"}).status_code == 403
    # An editor creates and changes destinations (editor: segments, traits, destinations,
    # models); deleting one is an admin's, as deleting a segment is; a read token changes none.
    editor = {"x-role": "editor"}
    assert (
        api.patch("/api/v1/destinations/crm", json={"concurrency": 3}, headers=editor).status_code
        == 200
    )
    assert api.post("/api/v1/destinations/crm/secrets", headers=editor).status_code == 200
    assert (
        api.patch(
            "/api/v1/destinations/crm", json={"concurrency": 3}, headers={"x-role": "read"}
        ).status_code
        == 403
    )
    assert api.delete("/api/v1/destinations/crm", headers=editor).status_code == 403
    assert api.delete("/api/v1/destinations/crm").status_code == 200
    assert api.get("/api/v1/destinations/crm").status_code == 404


def test_ssrf_refusals_are_clear_errors(tmp_path: Path) -> None:
    dns = {"intranet.example": ["192.168.1.20"], "localhost": ["127.0.0.1"]}
    api = client(tmp_path, [], resolver=lambda host: dns[host])
    for url, address in (
        ("http://127.0.0.1:9/hook", "127.0.0.1"),
        ("http://169.254.169.254/latest", "169.254.169.254"),
        ("http://localhost:9/", "127.0.0.1"),
        ("https://intranet.example/hook", "192.168.1.20"),  # a name resolving to private
    ):
        response = api.post("/api/v1/destinations", json={"name": "x", "url": url})
        assert response.status_code == 400, url
        body = response.json()["error"]
        assert body["code"] == "unsafe_url" and body["details"]["field"] == "url"
        assert "allow_list" in body["message"] and address in body["message"]
