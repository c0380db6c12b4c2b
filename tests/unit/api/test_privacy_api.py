"""``/api/v1/regulations`` and ``/api/v1/suppressions``: admin only, 202, errors naming fields,
identifiers never echoed (only keyed hashes), audit-logged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from segflow.api.auth import authorizer
from segflow.api.privacy import privacy_routes
from segflow.catalog.audit import AuditLog
from segflow.catalog.db import CatalogTarget
from segflow.catalog.tokens import TokenStore
from segflow.privacy.service import PrivacyService
from segflow.privacy.store import HashedIdentifier, PrivacyStore


class Client:
    """Requests to an ASGI app, each on its own event loop (httpx's ASGI transport)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://segflow") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@pytest.fixture
def api(catalog_target: CatalogTarget) -> Iterator[dict[str, Any]]:
    catalog = catalog_target
    tokens, audit, store = TokenStore(catalog), AuditLog(catalog), PrivacyStore(catalog)
    woken: list[int] = []
    svc = PrivacyService(store, audit=audit, on_submit=lambda: woken.append(1))
    app = Starlette(routes=privacy_routes(svc, authorizer(tokens)))
    admin = {"Authorization": f"Bearer {tokens.create('admin')}"}
    editor = {"Authorization": f"Bearer {tokens.create('editor')}"}
    client = Client(app)
    yield {
        "client": client,
        "admin": admin,
        "editor": editor,
        "svc": svc,
        "audit": audit,
        "woken": woken,
    }
    for closer in (tokens.close, audit.close, store.close):
        closer()


def test_a_regulation_is_accepted_with_202_and_shows_no_identifier(api: dict[str, Any]) -> None:
    client, admin = api["client"], api["admin"]
    body = {
        "type": "delete",
        "identifiers": [
            {"type": "email", "value": "Ann@Example.com"},
            {"type": "userId", "value": "u1"},
        ],
    }
    made = client.post("/api/v1/regulations", json=body, headers=admin)
    assert made.status_code == 202
    reg = made.json()
    assert reg["status"] == "pending" and reg["id"].startswith("reg_")
    assert [i["type"] for i in reg["identifiers"]] == ["email", "user_id"]
    assert "ann@example.com" not in made.text.lower() and "u1" not in made.text
    assert api["woken"] == [1]  # the runner of this process is woken at once
    shown = client.get(f"/api/v1/regulations/{reg['id']}", headers=admin).json()
    assert shown["id"] == reg["id"] and shown["status"] == "pending"
    listed = client.get("/api/v1/regulations?status=pending", headers=admin).json()
    assert [r["id"] for r in listed["regulations"]] == [reg["id"]]
    entry = api["audit"].list(action="regulation.")[0]
    assert (entry.action, entry.target) == ("regulation.create", reg["id"])
    assert "ann@example.com" not in str(entry.after)
    assert entry.after["identifiers"][0]["hash"] == reg["identifiers"][0]["hash"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "erase", "identifiers": [{"type": "email", "value": "a@b.co"}]}, "type"),
        ({"type": "delete"}, "identifiers"),
        ({"type": "delete", "identifiers": []}, "identifiers"),
        ({"type": "delete", "identifiers": ["a@b.co"]}, "identifiers[0]"),
        (
            {"type": "delete", "identifiers": [{"type": "phone", "value": "1"}]},
            "identifiers[0].type",
        ),
        (
            {"type": "delete", "identifiers": [{"type": "email", "value": "  "}]},
            "identifiers[0].value",
        ),
        (
            {"type": "suppress", "identifiers": [{"type": "email", "value": {"a": 1}}]},
            "identifiers[0].value",
        ),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(
    api: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    answer = api["client"].post("/api/v1/regulations", json=body, headers=api["admin"])
    assert answer.status_code == 400
    details = answer.json()["error"]["details"]
    assert details["field"] == field and details["reason"]


def test_only_admins_may_ask(api: dict[str, Any]) -> None:
    client = api["client"]
    body = {"type": "delete", "identifiers": [{"type": "email", "value": "a@b.co"}]}
    assert client.post("/api/v1/regulations", json=body).status_code == 401
    assert client.post("/api/v1/regulations", json=body, headers=api["editor"]).status_code == 403
    assert client.get("/api/v1/suppressions", headers=api["editor"]).status_code == 403
    missing = client.get("/api/v1/regulations/reg_nope", headers=api["admin"])
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "regulation_not_found"


def test_suppressions_are_listed_as_hashes_and_can_be_lifted(api: dict[str, Any]) -> None:
    client, admin, svc = api["client"], api["admin"], api["svc"]
    hashed = svc.hashed(svc.identifiers([{"type": "email", "value": "a@b.co"}]))
    assert svc.store.suppress(hashed, "reg_x") == 1
    version = svc.store.suppressions_version()
    listed = client.get("/api/v1/suppressions", headers=admin).json()["suppressions"]
    assert listed == [
        {
            "hash": hashed[0].hash,
            "type": "email",
            "created_ms": listed[0]["created_ms"],
            "regulation": "reg_x",
        }
    ]
    gone = client.delete(f"/api/v1/suppressions/{hashed[0].hash}", headers=admin)
    assert gone.status_code == 200
    assert client.get("/api/v1/suppressions", headers=admin).json()["suppressions"] == []
    assert svc.store.suppressions_version() > version  # serve processes reload the list
    again = client.delete(f"/api/v1/suppressions/{hashed[0].hash}", headers=admin)
    assert again.status_code == 404
    assert api["audit"].list(action="suppression.")[0].target == hashed[0].hash


def test_hashes_are_keyed_per_data_directory(tmp_path: Path) -> None:
    stores = [PrivacyStore(tmp_path / f"{n}.sqlite") for n in range(2)]
    try:
        made = [
            PrivacyService(s).hashed(
                PrivacyService(s).identifiers([{"type": "email", "value": "a@b.co"}])
            )
            for s in stores
        ]
        assert made[0] != made[1] and isinstance(made[0][0], HashedIdentifier)
        assert made[0] == PrivacyService(stores[0]).hashed(
            PrivacyService(stores[0]).identifiers([{"type": "email", "value": " A@B.CO "}])
        )
    finally:
        for s in stores:
            s.close()
