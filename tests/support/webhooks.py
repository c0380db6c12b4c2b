"""Deliveries signed as each vendor signs them (tests and benchmarks/webhooks.py), and
payloads in the vendors' documented shapes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

STRIPE_SECRET = "whsec_test_5f1d6c"
ZENDESK_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmc="
HUBSPOT_SECRET = "hubspot-client-secret-1234"
MAILCHIMP_SECRET = "mc-url-secret-9876"
SALESFORCE_ORG = "00D5g000004ABCDEAA"


def stripe_headers(body: bytes, now_s: int, secret: str = STRIPE_SECRET) -> dict[str, str]:
    """``Stripe-Signature`` as Stripe's own package makes it (``WebhookSignature``)."""
    from stripe import WebhookSignature

    value = WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=now_s)
    return {"stripe-signature": value, "content-type": "application/json"}


def zendesk_headers(body: bytes, now_s: int, secret: str = ZENDESK_SECRET) -> dict[str, str]:
    stamp = datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mac = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
    return {
        "x-zendesk-webhook-signature": base64.b64encode(mac).decode(),
        "x-zendesk-webhook-signature-timestamp": stamp,
        "content-type": "application/json",
    }


def hubspot_headers(
    body: bytes, now_ms: int, url: str, secret: str = HUBSPOT_SECRET
) -> dict[str, str]:
    signed = b"POST" + url.encode() + body + str(now_ms).encode()
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "x-hubspot-signature-v3": base64.b64encode(mac).decode(),
        "x-hubspot-request-timestamp": str(now_ms),
        "content-type": "application/json",
    }


class SendgridKey:
    """A P-256 key pair standing in for SendGrid's: it signs, segflow holds the public half."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = base64.b64encode(der).decode()  # as SendGrid's settings page shows it

    def headers(self, body: bytes, now_s: int) -> dict[str, str]:
        stamp = str(now_s)
        signature = self.private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
            "x-twilio-email-event-webhook-timestamp": stamp,
            "content-type": "application/json",
        }


def stripe_charge(event_id: str, email: str, customer: str, created_s: int) -> bytes:
    """A ``charge.succeeded`` event as Stripe sends it (trimmed to the fields it documents)."""
    charge = {
        "id": f"ch_{event_id}",
        "object": "charge",
        "amount": 4999,
        "currency": "usd",
        "customer": customer,
        "billing_details": {"email": email, "name": "Ann Smith"},
        "receipt_email": email,
        "paid": True,
        "status": "succeeded",
        "payment_intent": f"pi_{event_id}",
    }
    event = {
        "id": f"evt_{event_id}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created_s,
        "livemode": False,
        "pending_webhooks": 1,
        "type": "charge.succeeded",
        "data": {"object": charge},
    }
    return json.dumps(event).encode()


def zendesk_ticket(ticket_id: int, email: str, requester_id: int, at: str) -> bytes:
    """A trigger webhook's body, as docs/webhooks.md asks to paste into the trigger."""
    body: dict[str, Any] = {
        "type": "ticket.created",
        "ticket": {
            "id": str(ticket_id),
            "subject": "Cannot log in",
            "status": "new",
            "priority": "high",
            "updated_at": at,
            "requester": {"id": str(requester_id), "email": email, "name": "Ann Smith"},
        },
    }
    return json.dumps(body).encode()


def salesforce_message(org: str, notification_id: str = "04l5g000001XyZAAA") -> bytes:
    """An outbound message of one Contact, as Salesforce sends it (SOAP 1.1)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5g000000AbCdAAK</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D5g000004ABCD</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D5g000004ABCD</PartnerUrl>
   <Notification>
    <Id>{notification_id}</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0035g00000ABCDEAA</sf:Id>
     <sf:Email>Ann@Example.com</sf:Email>
     <sf:FirstName>Ann</sf:FirstName>
     <sf:LastName>Smith</sf:LastName>
     <sf:LastModifiedDate>2023-11-14T22:13:20.000Z</sf:LastModifiedDate>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>""".encode()
