"""A sync as people reach it: the CLI (add, run, list, status), the admin API (bad input, the
credential never shown, progress in /api/v1/status) and the console's sources page."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.vendors import VendorApi, person
from tests.support.wait import until
from typer.testing import CliRunner

from segflow.cli.main import _register_all, app
from segflow.collect.exceptions import UnknownSource
from segflow.config import load_settings
from segflow.server.compose import Assembly, assemble
from segflow.serving.runtime import Runtime
from segflow.syncs.auth import Credential
from segflow.syncs.runner import SyncRunner
from segflow.syncs.store import open_store

from .conftest import T0, TOKEN


def cli(data: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    if not app.registered_groups:
        _register_all()
    return CliRunner().invoke(app, [*args, "--data-dir", str(data)], env=env)


@pytest.fixture
def api_server() -> Iterator[VendorApi]:
    server = VendorApi(token=TOKEN, page_size=2)
    for n in range(1, 4):
        server.add("stripe", *person("stripe", n, f"p{n}@example.com", T0 + n * 1000))
    yield server
    server.close()


def test_the_cli_adds_runs_lists_and_reports_a_sync(tmp_path: Path, api_server: VendorApi) -> None:
    data = tmp_path / "data"
    assert cli(data, "sources", "create", "billing").exit_code == 0
    added = cli(
        data, "sources", "sync", "add", "stripe-live", "--vendor", "stripe", "--source",
        "billing", "--credential-env", "STRIPE_KEY", "--base-url", api_server.url,
        env={"STRIPE_KEY": TOKEN},
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert TOKEN not in added.output and TOKEN not in (data / "syncs.sqlite").read_text("latin-1")
    ran = cli(data, "sources", "sync", "run", "stripe-live")
    assert ran.exit_code == 0, ran.output
    line = json.loads(ran.output.strip().splitlines()[-1])
    assert (line["objects"], line["stored"]) == (3, 6)
    listed = json.loads(cli(data, "sources", "sync", "list", "--json").output)
    assert listed[0]["progress"]["state"] == "ok" and listed[0]["cursors"]["customers"]
    status = json.loads(cli(data, "status", "--json").output)
    assert status["parts"]["syncs"]["stripe-live"]["total_objects"] == 3


def test_a_failed_cli_run_exits_1_with_the_error(tmp_path: Path, api_server: VendorApi) -> None:
    data = tmp_path / "data"
    cli(data, "sources", "create", "billing")
    cli(
        data, "sources", "sync", "add", "s", "--vendor", "stripe", "--source", "billing",
        "--credential-env", "K", "--base-url", api_server.url, env={"K": "wrong"},
    )  # fmt: skip
    ran = cli(data, "sources", "sync", "run", "s")
    assert ran.exit_code == 1
    assert json.loads(ran.output.splitlines()[-1])["error"]["details"]["status"] == 401


_RUNTIMES: dict[int, Runtime] = {}


def served_runtime(parts: Assembly) -> Any:
    """The ingestor of the runtime ``parts`` were assembled from."""
    return _RUNTIMES[id(parts)].ingestor


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Assembly, str]]:
    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp_path)}}))
    parts = assemble(runtime)
    _RUNTIMES[id(parts)] = runtime
    token = parts.tokens.create("admin")
    try:
        yield parts, token
    finally:
        parts.services[0].stop()  # the stores' closer
        runtime.close()
        _RUNTIMES.pop(id(parts), None)


def _calls(app_: Any, token: str, *calls: tuple[str, str, Any]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app_)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://segflow", headers=headers
        ) as client:
            return [await client.request(m, p, json=b) for m, p, b in calls]

    return asyncio.run(go())


def test_the_api_refuses_bad_syncs_by_field_and_never_shows_the_credential(
    served: tuple[Assembly, str], api_server: VendorApi
) -> None:
    parts, token = served
    api = parts.mounts["/api"].app  # type: ignore[attr-defined]
    good = {"name": "s", "vendor": "stripe", "source": "crm", "credential": TOKEN,
            "base_url": api_server.url}  # fmt: skip
    vendor, objects, url, missing, created, dup, status, run, console = _calls(
        api, token,
        ("POST", "/api/v1/syncs", {**good, "vendor": "mailchimp"}),
        ("POST", "/api/v1/syncs", {**good, "objects": ["invoices"]}),
        ("POST", "/api/v1/syncs", {**good, "base_url": "ftp://x"}),
        ("POST", "/api/v1/syncs", {k: v for k, v in good.items() if k != "credential"}),
        ("POST", "/api/v1/syncs", good),
        ("POST", "/api/v1/syncs", good),
        ("GET", "/api/v1/status", None),
        ("POST", "/api/v1/syncs/s/run", None),
        ("GET", "/api/v1/syncs/nope", None),
    )  # fmt: skip
    for response, field in ((vendor, "vendor"), (objects, "objects"), (url, "base_url"),
                            (missing, "credential")):  # fmt: skip
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"]["field"] == field
    assert created.status_code == 201 and TOKEN not in created.text
    assert created.json()["sync"]["fingerprint"]
    assert dup.status_code == 409
    assert status.json()["parts"]["syncs"]["s"]["state"] == "idle"
    assert run.status_code == 202 and run.json()["progress"]["requested_at_ms"]
    assert console.status_code == 404


def test_the_api_and_the_cli_take_a_salesforce_refresh_flow_and_a_zendesk_api_token(
    served: tuple[Assembly, str], api_server: VendorApi, tmp_path: Path
) -> None:
    parts, token = served
    api = parts.mounts["/api"].app  # type: ignore[attr-defined]
    oauth = {"client_id": "3MVG", "client_secret": "cs-1", "refresh_token": "rt-1"}
    base = {"vendor": "salesforce", "source": "crm", "base_url": api_server.url}
    created, half, unknown = _calls(
        api, token,
        ("POST", "/api/v1/syncs", {**base, "name": "sf", "credential": oauth}),
        ("POST", "/api/v1/syncs", {**base, "name": "sf2", "credential": {"refresh_token": "r"}}),
        ("POST", "/api/v1/syncs", {**base, "name": "sf3", "credential": {"password": "x"}}),
    )  # fmt: skip
    assert created.status_code == 201 and "rt-1" not in created.text and "cs-1" not in created.text
    assert parts.syncs is not None and parts.syncs.auth("sf").refresh_token == "rt-1"
    assert (
        half.status_code == 400
        and half.json()["error"]["details"]["field"] == "credential.client_id"
    )
    assert unknown.status_code == 400 and "password" in unknown.text
    data = tmp_path / "cli"
    cli(data, "sources", "create", "support")
    added = cli(
        data, "sources", "sync", "add", "zd", "--vendor", "zendesk", "--source", "support",
        "--credential-env", "ZD", "--email", "agent@acme.com", "--base-url", api_server.url,
        env={"ZD": "zd-token"},
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    added = cli(
        data, "sources", "sync", "add", "sf", "--vendor", "salesforce", "--source", "support",
        "--client-id", "3MVG", "--client-secret-env", "CS", "--refresh-token-env", "RT",
        "--base-url", api_server.url, env={"CS": "cs-1", "RT": "rt-1"},
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    store = open_store(data)
    try:
        assert store.auth("zd") == Credential(token="zd-token", email="agent@acme.com")
        assert store.auth("sf") == Credential(
            client_id="3MVG", client_secret="cs-1", refresh_token="rt-1"
        )
    finally:
        store.close()


def test_the_console_sources_page_shows_each_sync_and_its_last_error(
    served: tuple[Assembly, str], api_server: VendorApi
) -> None:
    parts, token = served
    api = parts.mounts["/api"].app  # type: ignore[attr-defined]
    body = {"name": "zd", "vendor": "zendesk", "source": "crm", "credential": "wrong",
            "base_url": api_server.url}  # fmt: skip
    assert _calls(api, token, ("POST", "/api/v1/syncs", body))[0].status_code == 201
    assert parts.syncs is not None
    runner = SyncRunner(parts.syncs, served_runtime(parts))
    with pytest.raises(UnknownSource):  # no source "crm" yet: recorded, then raised
        runner.run("zd")
    html = asyncio.run(_console_sources(parts.mounts["/console"].app, token))  # type: ignore[attr-defined]
    assert "zd" in html and "zendesk" in html and "no source named" in html


async def _console_sources(console: Any, token: str) -> str:
    transport = httpx.ASGITransport(app=console)
    async with httpx.AsyncClient(transport=transport, base_url="http://segflow") as client:
        form = await client.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        done = await client.post(
            "/console/login", data={"csrf": csrf[1], "token": token, "next": "/console"}
        )
        assert done.status_code == 303, done.text
        return (await client.get("/console/sources")).text


def test_serve_s_schedule_runs_a_sync_asked_for_over_the_api(
    served: tuple[Assembly, str], api_server: VendorApi
) -> None:
    parts, token = served
    api = parts.mounts["/api"].app  # type: ignore[attr-defined]
    runtime = _RUNTIMES[id(parts)]
    runtime.catalog.create("billing")
    body = {"name": "st", "vendor": "stripe", "source": "billing", "credential": TOKEN,
            "base_url": api_server.url, "interval_s": 3600, "objects": ["customers"]}  # fmt: skip
    (schedule,) = [s for s in parts.services if s.name == "syncs"]
    schedule.start()
    try:
        (created,) = _calls(api, token, ("POST", "/api/v1/syncs", body))
        assert created.status_code == 201
        schedule.wake()
        # never run: the schedule runs it at its next look, and not again within the hour
        state = until(lambda: _state(api, token, "st") == "ok" or None, 30, "the first run")
        assert state and len(api_server.requests) == 2  # pages of 2: 3 customers
        assert _calls(api, token, ("POST", "/api/v1/syncs/st/run", None))[0].status_code == 202
        schedule.wake()
        # from the cursor: one page (the newest customer, read again and skipped)
        until(lambda: len(api_server.requests) == 3, 30, "the run asked for")
        assert _state(api, token, "st") in ("running", "ok")
    finally:
        schedule.stop()


def _state(api: Any, token: str, name: str) -> str:
    (answer,) = _calls(api, token, ("GET", "/api/v1/status", None))
    return str(answer.json()["parts"]["syncs"][name]["state"])
