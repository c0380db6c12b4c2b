"""Salesforce outbound messages (SOAP) -> identify calls, answered with the SOAP ``Ack``.

An outbound message carries no signature; segflow checks its ``OrganizationId`` against the
configured org id (and Salesforce's documented IP ranges or a TLS client certificate at the
proxy are the operator's to add). Each ``Notification`` is one Contact or Lead.

>>> OBJECTS["Contact"], TRAITS["FirstName"]
('salesforce_contact_id', 'firstName')
"""

from __future__ import annotations

import functools
from typing import Any
from xml.etree import ElementTree

from segflow.collect.webhooks.base import Adapter, Answer
from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item, message
from segflow.collect.webhooks.exceptions import BadSignature, Unmapped
from segflow.collect.webhooks.zendesk import _time_ms

OBJECTS = {"Contact": "salesforce_contact_id", "Lead": "salesforce_lead_id"}
TRAITS = {
    "FirstName": "firstName", "LastName": "lastName", "Name": "name", "Phone": "phone",
    "Title": "title", "Company": "company", "LeadSource": "leadSource",
}  # fmt: skip
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@functools.lru_cache(maxsize=16)  # verify and items read the same body: parsed once
def parse(body: bytes) -> ElementTree.Element:
    """The ``notifications`` element; DTDs are refused (no entity expansion)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise Unmapped("", "a SOAP message has no DTD")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise Unmapped("", f"the salesforce payload is not XML: {exc}") from None
    for element in root.iter():
        if _local(element.tag) == "notifications":
            return element
    raise Unmapped("notifications", "not a Salesforce outbound message")


def _child(element: ElementTree.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def verify(delivery: Delivery, config: WebhookConfig, secret: str | None, now_ms: int) -> None:
    expected = (config.organization_id or "").strip()
    if not expected:
        raise BadSignature("organization_id", "no Salesforce organization id is configured")
    try:
        given = _child(parse(delivery.body), "OrganizationId") or ""
    except Unmapped:
        raise BadSignature("OrganizationId", "the body is not an outbound message") from None
    # Salesforce ids come in a case-sensitive 15-character form and an 18-character one
    if given[:15] != expected[:15]:
        raise BadSignature("OrganizationId", "not the configured organization")


def _one(notification: ElementTree.Element, received_at_ms: int) -> Item:
    sobject = next((c for c in notification if _local(c.tag) == "sObject"), None)
    note_id = _child(notification, "Id")
    if sobject is None or not note_id:
        shown = ElementTree.tostring(notification, encoding="unicode")
        return Unmapped("sObject", "a Notification needs an Id and an sObject"), shown
    kind = sobject.get(_XSI_TYPE, "").rsplit(":", 1)[-1]
    fields: dict[str, Any] = {_local(c.tag): (c.text or "").strip() for c in sobject}
    text = {"Id": note_id, "sObject": kind, "fields": fields}  # what a dead letter keeps
    id_type = OBJECTS.get(kind)
    if id_type is None:
        return Unmapped(
            "sObject", f"salesforce sObject {kind!r} is not mapped (docs/webhooks.md)"
        ), text
    try:
        built = message(
            "salesforce",
            f"salesforce:{note_id}",  # kept by Salesforce across its retries
            _time_ms(fields.get("LastModifiedDate"), received_at_ms),
            email=fields.get("Email"),
            ids={id_type: fields.get("Id")},
            traits={t: fields[f] for f, t in TRAITS.items() if fields.get(f)},
        )
    except Unmapped as exc:
        return exc, text
    return built, text


def items(delivery: Delivery, config: WebhookConfig) -> list[Item]:
    root = parse(delivery.body)
    found = [n for n in root if _local(n.tag) == "Notification"]
    return [_one(n, delivery.received_at_ms) for n in found] or [
        (
            Unmapped("Notification", "an outbound message without notifications"),
            delivery.body.decode("utf-8", "replace"),
        )
    ]


def answer(summary: dict[str, Any]) -> Answer:
    """Salesforce retries until it reads ``<Ack>true</Ack>``."""
    return 200, b"text/xml; charset=utf-8", ACK


ADAPTER = Adapter("salesforce", verify, items, answer, needs_secret=False)
