"""A sync's credentials beyond a bearer token, against the loopback vendors: Salesforce's OAuth
2.0 refresh-token flow and Zendesk's API token auth (docs/syncs.md, "Credentials")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from segflow.activate.secretbox import SecretBox
from segflow.syncs.auth import Credential
from segflow.syncs.exceptions import SyncInvalid, VendorError
from segflow.syncs.store import SyncDefinition, open_store

from .conftest import World

APP = ("3MVG9-client", "client-secret", "5Aep-refresh")


def _salesforce(world: World, token: str = "00Dsf!expired") -> str:
    world.api.salesforce_app = APP
    obj = world.people("salesforce", 7)
    client_id, client_secret, refresh_token = APP
    credential = Credential(
        token=token, client_id=client_id, client_secret=client_secret, refresh_token=refresh_token
    )
    return world.sync("salesforce", obj, credential=credential)


def _paths(world: World) -> list[tuple[str, int]]:
    return [(path, status) for _, path, status in world.api.requests]


def test_an_expired_salesforce_token_is_refreshed_once_the_request_retried_and_kept(
    world: World,
) -> None:
    name = _salesforce(world)
    result = world.runner.run(name)
    assert (result.objects, result.stored) == (7, 14)
    first, refresh, retried = _paths(world)[:3]
    assert first == ("/services/data/v59.0/query", 401)
    assert refresh == ("/services/oauth2/token", 200)
    assert retried == ("/services/data/v59.0/query", 200)
    assert world.api.refreshes == 1
    new_token = world.api.token
    assert world.store.auth(name).token == new_token
    assert new_token.encode() not in (world.data / "syncs.sqlite").read_bytes()  # encrypted
    # the next run signs with the stored token: no refresh
    world.api.requests.clear()
    world.runner.run(name)
    assert world.api.refreshes == 1 and all(s == 200 for _, s in _paths(world))


def test_a_salesforce_sync_without_an_access_token_gets_one_first(world: World) -> None:
    name = _salesforce(world, token="")
    assert world.runner.run(name).stored == 14
    assert _paths(world)[0] == ("/services/oauth2/token", 200)
    assert world.store.auth(name).token == world.api.token


def test_a_refused_refresh_token_is_a_vendor_error_and_the_cursor_stays(world: World) -> None:
    name = _salesforce(world)
    world.api.salesforce_app = (APP[0], APP[1], "revoked")
    with pytest.raises(VendorError) as caught:
        world.runner.run(name)
    assert caught.value.status == 400 and caught.value.details["error"] == "invalid_grant"
    progress = world.store.get(name).progress
    assert progress.state == "failed" and "refresh token was refused" in (progress.last_error or "")
    assert world.store.get(name).cursors == {} and world.events() == []


def test_a_token_refused_again_after_a_refresh_is_not_refreshed_twice(world: World) -> None:
    name = _salesforce(world)
    real = world.api._refresh

    def refresh_that_the_api_refuses(form: dict[str, str]) -> tuple[int, object]:
        status, body = real(form)
        world.api.token = "something-else"  # the new token is refused too
        return status, body

    world.api._refresh = refresh_that_the_api_refuses  # type: ignore[method-assign]
    with pytest.raises(VendorError) as caught:
        world.runner.run(name)
    assert caught.value.status == 401
    assert [p for p, _ in _paths(world)].count("/services/oauth2/token") == 1


def test_a_salesforce_sync_without_the_refresh_flow_fails_on_401_as_before(world: World) -> None:
    obj = world.people("salesforce", 1)
    world.sync("salesforce", obj, credential="00Dsf!expired")
    world.api.salesforce_app = APP
    with pytest.raises(VendorError) as caught:
        world.runner.run("salesforce")
    assert caught.value.status == 401 and world.api.refreshes == 0


def test_zendesk_takes_an_api_token_with_the_agent_s_email(world: World) -> None:
    world.api.zendesk_api_token = ("agent@acme.com", "zd-api-token")
    obj = world.people("zendesk", 7)
    credential = Credential(token="zd-api-token", email="agent@acme.com")
    world.sync("zendesk", obj, credential=credential)
    result = world.runner.run("zendesk")
    assert (result.objects, result.stored) == (7, 14)
    assert world.store.auth("zendesk") == credential
    assert b"agent@acme.com" not in (world.data / "syncs.sqlite").read_bytes()


def test_a_zendesk_api_token_of_another_agent_is_refused(world: World) -> None:
    world.api.zendesk_api_token = ("agent@acme.com", "zd-api-token")
    obj = world.people("zendesk", 1)
    world.sync("zendesk", obj, credential=Credential(token="zd-api-token", email="x@acme.com"))
    with pytest.raises(VendorError) as caught:
        world.runner.run("zendesk")
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("vendor", "credential", "field"),
    [
        ("stripe", Credential(token="t", email="a@b.c"), "credential.email"),
        ("zendesk", Credential(token="t", email="not-an-email"), "credential.email"),
        ("hubspot", Credential(refresh_token="r", client_id="i", client_secret="s"),
         "credential.refresh_token"),
        ("salesforce", Credential(refresh_token="r", client_id="i"), "credential.client_secret"),
        ("salesforce", Credential(), "credential"),
    ],
)  # fmt: skip
def test_a_credential_that_does_not_fit_its_vendor_is_refused_naming_the_field(
    world: World, vendor: str, credential: Credential, field: str
) -> None:
    definition = SyncDefinition(name="s", vendor=vendor, source="crm")
    with pytest.raises(SyncInvalid) as caught:
        world.store.create(definition, credential)
    assert caught.value.field == field
    assert world.store.names() == []


def test_a_store_made_before_credentials_had_parts_opens_and_keeps_its_token(
    tmp_path: Path,
) -> None:
    box = SecretBox.open(tmp_path)
    con = sqlite3.connect(tmp_path / "syncs.sqlite")
    con.execute(
        "CREATE TABLE syncs(name TEXT PRIMARY KEY, definition BLOB NOT NULL,"
        " credential TEXT NOT NULL, fingerprint TEXT NOT NULL, created_at_ms INTEGER NOT NULL)"
    )
    definition = SyncDefinition(name="old", vendor="stripe", source="crm")
    con.execute(
        "INSERT INTO syncs VALUES(?,?,?,?,?)",
        ("old", msgspec.json.encode(definition), box.encrypt("rk_old"), "fp", 1),
    )
    con.commit()
    con.close()
    store = open_store(tmp_path)
    try:
        assert store.auth("old") == Credential(token="rk_old")
        store.replace_token("old", "rk_new")
        assert store.credential("old") == "rk_new"
    finally:
        store.close()
