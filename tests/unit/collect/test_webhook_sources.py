"""Managing webhook sources: the admin API, the CLI and ``webhooks/*.yaml`` for ``segflow apply``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from tests.support import webhooks as wh
from typer.testing import CliRunner

from segflow.activate.secretbox import SecretBox
from segflow.api.sources import source_routes
from segflow.cli.main import _register_all, app
from segflow.collect.catalog import SourceCatalog
from segflow.collect.webhooks import files
from segflow.errors import ValidationError


async def _allow(request: Request, role: str) -> None:
    return None


@pytest.fixture
def catalog(tmp_path: Path) -> SourceCatalog:
    return SourceCatalog(tmp_path / "catalog.sqlite")


def _api(catalog: SourceCatalog, tmp: Path) -> Any:
    routes = source_routes(catalog, lambda **kw: [], _allow, None, SecretBox.open(tmp))
    starlette = Starlette(routes=routes)

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=starlette)
            async with httpx.AsyncClient(transport=transport, base_url="http://segflow") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    return call


def test_the_api_sets_a_webhook_keeps_it_across_config_edits_and_never_shows_the_secret(
    catalog: SourceCatalog, tmp_path: Path
) -> None:
    call = _api(catalog, tmp_path)
    assert call("POST", "/api/v1/sources", json={"name": "billing"}).status_code == 201
    r = call(
        "PUT", "/api/v1/sources/billing/webhook", json={"vendor": "stripe", "secret": "whsec_9"}
    )
    assert r.status_code == 200, r.text
    hook = r.json()["source"]["config"]["webhook"]
    assert (
        hook["vendor"] == "stripe" and hook["secret_fingerprint"] and "encrypted_secret" not in hook
    )
    r = call(
        "PUT", "/api/v1/sources/billing/config", json={"event_names": {"Order Completed": ["paid"]}}
    )
    assert r.json()["source"]["config"]["webhook"]["vendor"] == "stripe"
    listed = call("GET", "/api/v1/sources").text
    assert "whsec_9" not in listed and "encrypted_secret" not in listed
    r = call("PUT", "/api/v1/sources/billing/config", json={"webhook": {"vendor": "stripe"}})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "webhook"
    assert call("DELETE", "/api/v1/sources/billing/webhook").json()["source"]["config"] == {
        "event_names": {"Order Completed": ["paid"]}
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"vendor": "shopify"}, "vendor"),
        ({"vendor": "stripe"}, "secret"),
        ({"vendor": "sendgrid", "public_key": "bm90IGEga2V5"}, "public_key"),
        ({"vendor": "salesforce", "organization_id": "short"}, "organization_id"),
        ({"vendor": "generic", "mapping": {"message_id": "id"}}, "mapping.event"),
        ({"vendor": "stripe", "secret": "s", "colour": "red"}, "webhook"),
    ],
)
def test_the_api_refuses_settings_a_vendor_cannot_work_with(
    catalog: SourceCatalog, tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    call = _api(catalog, tmp_path)
    catalog.create("hooks")
    r = call("PUT", "/api/v1/sources/hooks/webhook", json=body)
    assert (r.status_code, r.json()["error"]["details"]["field"]) == (400, field)


def test_mailchimp_gets_a_generated_url_secret_shown_once(
    catalog: SourceCatalog, tmp_path: Path
) -> None:
    call = _api(catalog, tmp_path)
    catalog.create("audience")
    r = call("PUT", "/api/v1/sources/audience/webhook", json={"vendor": "mailchimp"})
    made = r.json()["secret"]
    again = call(
        "PUT", "/api/v1/sources/audience/webhook", json={"vendor": "mailchimp", "tolerance_s": 60}
    )
    assert "secret" not in again.json()  # the URL secret made before is kept
    hook = catalog.get("audience").config.webhook
    assert (
        hook is not None and SecretBox.open(tmp_path).decrypt(hook.encrypted_secret or "") == made
    )


def test_the_cli_reads_the_secret_from_the_environment(tmp_path: Path) -> None:
    if not app.registered_groups:
        _register_all()
    runner, data = CliRunner(), ["--data-dir", str(tmp_path)]
    assert runner.invoke(app, ["sources", "create", "helpdesk", *data]).exit_code == 0
    args = ["sources", "webhook", "helpdesk", "--vendor", "zendesk", "--secret-env", "ZD", *data]
    result = runner.invoke(app, args, env={"ZD": wh.ZENDESK_SECRET})
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["sources", "list", "--json", *data]).output
    hook = json.loads(shown)[0]["config"]["webhook"]
    assert hook["vendor"] == "zendesk" and wh.ZENDESK_SECRET not in shown
    missing = runner.invoke(app, args, env={"ZD": ""})
    assert missing.exit_code != 0
    removed = runner.invoke(app, ["sources", "webhook", "helpdesk", "--remove", *data])
    assert removed.exit_code == 0, removed.output
    shown = runner.invoke(app, ["sources", "list", "--json", *data]).output
    assert "webhook" not in json.loads(shown)[0]["config"]


def test_webhook_files_plan_create_then_same_then_update(
    catalog: SourceCatalog, tmp_path: Path
) -> None:
    root = tmp_path / "defs"
    (root / "webhooks").mkdir(parents=True)
    (root / "webhooks" / "acme.yaml").write_text(
        "vendor: generic\nsecret_env: ACME\nmapping:\n  event: kind\n  email: who.email\n"
    )
    box = SecretBox.open(tmp_path)
    env = {"ACME": "s1"}
    [change] = files.plan(catalog, root, env)
    assert (change.action, change.name) == ("create", "acme")
    [(_, key, _)] = files.apply(catalog, [change], box)
    assert key and catalog.authenticate(key) is not None
    assert [c.action for c in files.plan(catalog, root, env)] == ["same"]
    assert [c.action for c in files.plan(catalog, root, {"ACME": "s2"})] == ["update"]
    (root / "webhooks" / "acme.yaml").write_text("vendor: generic\nsecret: plain\n")
    with pytest.raises(ValidationError, match="secret_env"):
        files.plan(catalog, root, env)
