"""Vendor webhooks through the collector app in process: each vendor's documented payloads,
signed as the vendor signs them, against a real SQLite log and catalog."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from tests.support import webhooks as wh

from segflow.activate.secretbox import SecretBox
from segflow.clock import ManualClock
from segflow.collect.app import CollectorApp
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor
from segflow.collect.webhooks.config import GenericMapping
from segflow.collect.webhooks.manage import WebhookSettings, configure_webhook
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event

NOW_S = 1_700_000_000
BASE = "http://collector.test"


class Rig:
    """The collector app over a real log and catalog, with webhook sources."""

    def __init__(self, tmp: Path, log: SqliteEventLog, clock: ManualClock) -> None:
        self.log, self.clock = log, clock
        self.catalog = SourceCatalog(tmp / "catalog.sqlite", clock=clock)
        self.box = SecretBox.open(tmp)
        self.app = CollectorApp(Ingestor(log, self.catalog), clock=clock, secrets=self.box)
        self.keys: dict[str, str] = {}

    def source(self, name: str, **settings: Any) -> str:
        _, key = self.catalog.create(name)
        configure_webhook(self.catalog, name, WebhookSettings(**settings), self.box)
        self.keys[name] = key
        return key

    def post(self, path: str, body: bytes, headers: dict[str, str], **kw: Any) -> httpx.Response:
        return self.call("POST", path, content=body, headers=headers, **kw)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def events(self) -> list[Event]:
        return [r.event for p in range(self.log.partitions) for r in self.log.read(p, 0)]

    def dead(self) -> list[Any]:
        return self.log.dead_letters(limit=100)


@pytest.fixture
def rig(tmp_path: Path, log: SqliteEventLog, clock: ManualClock) -> Rig:
    assert clock.now_ms() == NOW_S * 1000
    return Rig(tmp_path, log, clock)


def ids(event: Event) -> dict[str, str]:
    listed = (event.context or {}).get("externalIds", [])
    return {x["type"]: x["id"] for x in listed}


def test_a_stripe_charge_is_an_order_completed_once_however_often_stripe_retries(rig: Rig) -> None:
    rig.source("stripe", vendor="stripe", secret=wh.STRIPE_SECRET)
    body = wh.stripe_charge("1", "Ann@Example.com", "cus_9", NOW_S - 5)
    first = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S))
    assert first.status_code == 200, first.text
    again = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S + 60))
    assert (again.json()["accepted"], again.json()["duplicates"]) == (1, 1)
    [event] = rig.events()
    assert (event.type, event.event, event.message_id) == (
        "track",
        "Order Completed",
        "stripe:evt_1",
    )
    assert event.properties["total"] == 49.99 and event.properties["currency"] == "USD"
    assert event.context["traits"]["email"] == "ann@example.com"
    assert ids(event) == {"stripe_customer_id": "cus_9"}


def test_stripe_refuses_a_wrong_secret_and_a_replay_outside_300_s(rig: Rig) -> None:
    rig.source("stripe", vendor="stripe", secret=wh.STRIPE_SECRET)
    body = wh.stripe_charge("2", "a@b.c", "cus_1", NOW_S)
    forged = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S, "whsec_other"))
    assert forged.status_code == 401 and forged.json()["code"] == "bad_signature"
    stale = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S - 301))
    assert stale.status_code == 401 and "window" in stale.json()["details"]["reason"]
    unsigned = rig.post("/v1/webhooks/stripe", body, {"content-type": "application/json"})
    assert unsigned.status_code == 401
    assert rig.events() == []


def test_an_unknown_stripe_event_type_is_acknowledged_and_dead_lettered(rig: Rig) -> None:
    rig.source("stripe", vendor="stripe", secret=wh.STRIPE_SECRET)
    event = {
        "id": "evt_x",
        "type": "payout.paid",
        "created": NOW_S,
        "data": {"object": {"id": "po_1"}},
    }
    body = json.dumps(event).encode()
    r = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S))
    assert r.status_code == 200 and r.json()["accepted"] == 0
    assert r.json()["deadLettered"][0]["field"] == "type"
    [letter] = rig.dead()
    assert "payout.paid" in letter.reason and b"po_1" in letter.payload
    garbage = b"not json"
    r = rig.post("/v1/webhooks/stripe", garbage, wh.stripe_headers(garbage, NOW_S))
    assert r.status_code == 400 and "not JSON" in r.json()["reason"]
    assert len(rig.dead()) == 2


def test_a_deleted_stripe_customer_is_a_customer_deleted_event_on_its_profile(rig: Rig) -> None:
    rig.source("stripe", vendor="stripe", secret=wh.STRIPE_SECRET)
    customer = {"id": "cus_9", "object": "customer", "email": "Ann@Example.com", "name": "Ann"}
    event = {"id": "evt_del", "object": "event", "type": "customer.deleted", "created": NOW_S - 5,
             "data": {"object": customer}}  # fmt: skip
    body = json.dumps(event).encode()
    r = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S))
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    [stored] = rig.events()
    assert (stored.type, stored.event) == ("track", "Customer Deleted")
    assert stored.properties["customer_id"] == "cus_9"
    assert stored.context["traits"]["email"] == "ann@example.com"
    assert ids(stored) == {"stripe_customer_id": "cus_9"}
    assert rig.dead() == []


def test_a_zendesk_ticket_trigger_and_event_webhook(rig: Rig) -> None:
    rig.source("support", vendor="zendesk", secret=wh.ZENDESK_SECRET)
    body = wh.zendesk_ticket(35, "ann@example.com", 901, "2023-11-14T22:13:00Z")
    headers = {**wh.zendesk_headers(body, NOW_S), "x-zendesk-webhook-invocation-id": "inv-1"}
    assert rig.post("/v1/webhooks/zendesk", body, headers).status_code == 200
    assert rig.post("/v1/webhooks/zendesk", body, headers).json()["duplicates"] == 1
    solved = {
        "type": "zen:event-type:ticket.status_changed",
        "id": "cbe4028c-7239-495d-b020-f22348516046",
        "time": "2023-11-14T22:20:00Z",
        "subject": "zen:ticket:35",
        "detail": {
            "id": "35",
            "requester_id": "901",
            "status": "SOLVED",
            "subject": "Cannot log in",
        },
        "event": {"current": "SOLVED", "previous": "OPEN"},
    }
    body = json.dumps(solved).encode()
    assert (
        rig.post("/v1/webhooks/zendesk", body, wh.zendesk_headers(body, NOW_S)).status_code == 200
    )
    created, done = sorted(rig.events(), key=lambda e: e.timestamp_ms)
    assert (created.event, created.message_id) == ("Ticket Created", "zendesk:inv-1")
    assert created.properties["ticket_id"] == "35" and ids(created) == {"zendesk_user_id": "901"}
    assert done.event == "Ticket Solved" and ids(done) == {"zendesk_user_id": "901"}
    tampered = rig.post("/v1/webhooks/zendesk", body + b" ", wh.zendesk_headers(body, NOW_S))
    assert tampered.status_code == 401


def test_hubspot_v3_signs_the_url_and_batches_contact_events(rig: Rig) -> None:
    key = rig.source("crm", vendor="hubspot", secret=wh.HUBSPOT_SECRET)
    events = [
        {"eventId": 1, "subscriptionId": 7, "portalId": 62515, "appId": 1, "occurredAt": NOW_S * 1000,
         "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 123,
         "changeSource": "CRM", "changeFlag": "NEW"},
        {"eventId": 2, "subscriptionId": 8, "portalId": 62515, "appId": 1, "occurredAt": NOW_S * 1000,
         "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 123,
         "propertyName": "email", "propertyValue": "Ann@Example.com", "changeSource": "CRM"},
        {"eventId": 3, "subscriptionId": 9, "portalId": 62515, "appId": 1, "occurredAt": NOW_S * 1000,
         "subscriptionType": "deal.creation", "attemptNumber": 0, "objectId": 555},
    ]  # fmt: skip
    body = json.dumps(events).encode()
    path = f"/v1/webhooks/hubspot?writeKey={key}"
    r = rig.post(path, body, wh.hubspot_headers(body, NOW_S * 1000, BASE + path))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2 and r.json()["deadLettered"][0]["field"] == "subscriptionType"
    created, changed = sorted(rig.events(), key=lambda e: e.message_id)
    assert (created.event, created.message_id) == ("Contact Created", "hubspot:62515:1")
    assert changed.type == "identify" and changed.traits["email"] == "ann@example.com"
    assert ids(changed) == {"hubspot_contact_id": "123"}
    old = (NOW_S - 301) * 1000
    r = rig.post(path, body, wh.hubspot_headers(body, old, BASE + path))
    assert r.status_code == 401
    r = rig.post(path, body, wh.hubspot_headers(body, NOW_S * 1000, BASE + "/elsewhere"))
    assert r.status_code == 401


def test_sendgrid_signed_event_webhook(rig: Rig) -> None:
    signer = wh.SendgridKey()
    rig.source("mail", vendor="sendgrid", public_key=signer.public)
    events = [
        {"email": "ann@example.com", "timestamp": NOW_S, "event": "open", "sg_event_id": "ZW1h",
         "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "useragent": "x"},
        {"email": "ann@example.com", "timestamp": NOW_S, "event": "click", "sg_event_id": "Y2xp",
         "url": "https://example.com/offer"},
        {"email": "ann@example.com", "timestamp": NOW_S, "event": "machine_open", "sg_event_id": "bW8"},
    ]  # fmt: skip
    body = json.dumps(events).encode()
    r = rig.post("/v1/webhooks/sendgrid", body, signer.headers(body, NOW_S))
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    names = sorted(e.event or "" for e in rig.events())
    assert names == ["Email Link Clicked", "Email Opened"]
    other = wh.SendgridKey()
    assert rig.post("/v1/webhooks/sendgrid", body, other.headers(body, NOW_S)).status_code == 401


def test_salesforce_outbound_message_is_acked_in_soap(rig: Rig) -> None:
    rig.source("sfdc", vendor="salesforce", organization_id=wh.SALESFORCE_ORG)
    body = wh.salesforce_message(wh.SALESFORCE_ORG)
    r = rig.post("/v1/webhooks/salesforce", body, {"content-type": "text/xml"})
    assert r.status_code == 200 and b"<Ack>true</Ack>" in r.content
    assert r.headers["content-type"].startswith("text/xml")
    [event] = rig.events()
    assert event.type == "identify" and event.message_id == "salesforce:04l5g000001XyZAAA"
    assert event.traits == {"firstName": "Ann", "lastName": "Smith", "email": "ann@example.com"}
    assert ids(event) == {"salesforce_contact_id": "0035g00000ABCDEAA"}
    assert rig.post("/v1/webhooks/salesforce", body, {}).status_code == 200  # a retry
    assert len(rig.events()) == 1
    other = wh.salesforce_message("00D5g000009ZZZZAA")
    assert rig.post("/v1/webhooks/salesforce", other, {}).status_code == 401


def test_mailchimp_url_secret_form_body_and_validation_get(rig: Rig) -> None:
    rig.source("audience", vendor="mailchimp", secret=wh.MAILCHIMP_SECRET)
    url = f"/v1/webhooks/mailchimp?secret={wh.MAILCHIMP_SECRET}"
    assert rig.call("GET", url).status_code == 200
    assert rig.call("GET", "/v1/webhooks/mailchimp?secret=nope").status_code == 401
    form = urlencode({
        "type": "unsubscribe", "fired_at": "2023-11-14 22:13:20", "data[action]": "unsub",
        "data[reason]": "manual", "data[id]": "8a25ff1d98", "data[list_id]": "a6b5da1054",
        "data[email]": "ann@example.com", "data[merges][FNAME]": "Ann",
    }).encode()  # fmt: skip
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert rig.post(url, form, headers).status_code == 200
    assert rig.post(url, form, headers).json()["duplicates"] == 1
    [event] = rig.events()
    assert event.event == "Email Unsubscribed" and ids(event) == {
        "mailchimp_member_id": "8a25ff1d98"
    }
    assert event.properties["reason"] == "manual"
    assert rig.post("/v1/webhooks/mailchimp", form, headers).status_code == 401


def test_a_generic_webhook_maps_paths_and_checks_its_hmac(rig: Rig) -> None:
    import hashlib
    import hmac

    mapping = GenericMapping(
        items="events", event="kind", message_id="id", timestamp="at", email="customer.email",
        identifiers={"acme_user_id": "customer.id"}, properties={"plan": "data.plan"},
    )  # fmt: skip
    key = rig.source("acme", vendor="generic", secret="s3cret", mapping=mapping)
    payload = {
        "events": [
            {"id": "e1", "kind": "Plan Upgraded", "at": NOW_S, "data": {"plan": "pro"},
             "customer": {"id": 42, "email": "Ann@Example.com"}},
            {"id": "e2", "at": NOW_S, "customer": {"id": 42}},
        ]
    }  # fmt: skip
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    r = rig.post("/v1/webhooks/generic", body, {"x-signature-256": sig}, auth=(key, ""))
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert r.json()["deadLettered"][0]["field"] == "kind"
    [event] = rig.events()
    assert (event.event, event.message_id, event.properties) == (
        "Plan Upgraded", "generic:e1", {"plan": "pro"},
    )  # fmt: skip
    assert ids(event) == {"acme_user_id": "42"} and event.timestamp_ms == NOW_S * 1000
    r = rig.post("/v1/webhooks/generic", body, {"x-signature-256": "sha256=00"}, auth=(key, ""))
    assert r.status_code == 401


def test_the_write_key_of_another_source_or_vendor_is_refused(rig: Rig) -> None:
    rig.source("stripe", vendor="stripe", secret=wh.STRIPE_SECRET)
    _, web_key = rig.catalog.create("web")
    body = wh.stripe_charge("3", "a@b.c", "cus_1", NOW_S)
    r = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S), auth=(web_key, ""))
    assert r.status_code == 401
    r = rig.post("/v1/webhooks/shopify", body, {})
    assert r.status_code == 404 and r.json()["code"] == "unknown_vendor"
    assert rig.call("GET", "/v1/webhooks/stripe").status_code == 405


def test_the_secret_is_stored_encrypted_and_never_listed(rig: Rig) -> None:
    rig.source("stripe", vendor="stripe", secret=wh.STRIPE_SECRET)
    raw = rig.catalog._con.execute("SELECT config FROM sources").fetchone()[0]
    assert wh.STRIPE_SECRET.encode() not in bytes(raw)
    from segflow.collect.webhooks.manage import public_source

    shown = json.dumps(public_source(rig.catalog.get("stripe")))
    assert "encrypted_secret" not in shown and "secret_fingerprint" in shown


def test_a_secret_the_server_cannot_decrypt_is_a_503_the_vendor_retries(
    tmp_path: Path, log: SqliteEventLog, clock: ManualClock
) -> None:
    rig = Rig(tmp_path, log, clock)
    rig.source("stripe", vendor="stripe", secret=wh.STRIPE_SECRET)
    other = SecretBox.open(tmp_path / "elsewhere")  # another host's key
    rig.app = CollectorApp(Ingestor(log, rig.catalog), clock=clock, secrets=other)
    body = wh.stripe_charge("4", "a@b.c", "cus_1", NOW_S)
    r = rig.post("/v1/webhooks/stripe", body, wh.stripe_headers(body, NOW_S))
    assert r.status_code == 503 and r.headers["retry-after"] == "60"
    assert rig.events() == []


ODD_JSON = [
    b"[]", b"{}", b'"text"', b"1", b"null", b"[1, 2]", b'[{"event": 1}]',
    b'{"id": "evt_o", "type": "charge.succeeded", "data": 5}',
    b'{"id": "evt_o", "type": "charge.succeeded", "created": "soon", "data": {"object": {"customer": {}}}}',
    b'{"id": "evt_o", "type": "charge.succeeded", "data": {"object": {"amount": "1", "currency": 3, "customer": "c"}}}',
    b'{"type": "ticket.created", "ticket": "35"}',
    b'{"type": "ticket.created", "ticket": {"requester": "x", "updated_at": 5}}',
    b'{"type": "zen:event-type:ticket.created", "detail": [], "event": "x", "time": 7}',
    b'[{"subscriptionType": "contact.creation", "occurredAt": "late", "objectId": {"a": 1}}]',
    b'[{"event": "open", "email": ["a"], "timestamp": "x"}, {"event": "open", "email": "a@b.c", "timestamp": 1e300}]',
]  # fmt: skip


@pytest.mark.parametrize("vendor", ["stripe", "zendesk", "hubspot", "sendgrid", "generic"])
def test_odd_payloads_are_answered_with_a_4xx_or_dead_letters_never_a_500(
    rig: Rig, vendor: str
) -> None:
    signer = wh.SendgridKey()
    settings: dict[str, Any] = {
        "stripe": {"secret": wh.STRIPE_SECRET},
        "zendesk": {"secret": wh.ZENDESK_SECRET},
        "hubspot": {"secret": wh.HUBSPOT_SECRET},
        "sendgrid": {"public_key": signer.public},
        "generic": {"mapping": GenericMapping(items="events", event="kind", email="who")},
    }[vendor]
    key = rig.source(vendor, vendor=vendor, **settings)
    path = f"/v1/webhooks/{vendor}?writeKey={key}"
    for body in ODD_JSON:
        headers = {
            "stripe": lambda b: wh.stripe_headers(b, NOW_S),
            "zendesk": lambda b: wh.zendesk_headers(b, NOW_S),
            "hubspot": lambda b: wh.hubspot_headers(b, NOW_S * 1000, BASE + path),
            "sendgrid": lambda b: signer.headers(b, NOW_S),
            "generic": lambda b: {},
        }[vendor](body)
        r = rig.post(path, body, headers)
        assert r.status_code in (200, 400), (body, r.status_code, r.text)
        if r.status_code == 200:
            assert r.json()["accepted"] + len(r.json()["deadLettered"]) >= 1, body


def test_odd_salesforce_and_mailchimp_bodies_are_refused_with_their_reason(rig: Rig) -> None:
    rig.source("sfdc", vendor="salesforce", organization_id=wh.SALESFORCE_ORG)
    rig.source("audience", vendor="mailchimp", secret=wh.MAILCHIMP_SECRET)
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    for body in (b"not xml", b"<x/>", bomb, b"\xff\xfe"):
        r = rig.post("/v1/webhooks/salesforce", body, {"content-type": "text/xml"})
        assert r.status_code == 401 and r.json()["details"]["header"] == "OrganizationId"
    empty = wh.salesforce_message(wh.SALESFORCE_ORG).replace(b"<sf:Id>", b"<sf:Other>")
    empty = empty.replace(b"</sf:Id>", b"</sf:Other>").replace(b"sf:Contact", b"sf:Opportunity")
    r = rig.post("/v1/webhooks/salesforce", empty, {})
    assert r.status_code == 200 and b"<Ack>true</Ack>" in r.content  # acked, dead-lettered
    assert any("Opportunity" in d.reason for d in rig.dead())
    url = f"/v1/webhooks/mailchimp?secret={wh.MAILCHIMP_SECRET}"
    for body, status in ((b"a=b&&&c", 400), (b"\xff", 400), (b"type=campaign&data[id]=1", 200)):
        assert rig.post(url, body, {}).status_code == status, body
    assert any("campaign" in d.reason for d in rig.dead())
