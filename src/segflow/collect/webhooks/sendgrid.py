"""SendGrid's signed event webhook (ECDSA P-256) -> email engagement events.

>>> SENDGRID_EVENTS["open"], SENDGRID_EVENTS["click"]
('Email Opened', 'Email Link Clicked')
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from segflow.collect.webhooks import signatures
from segflow.collect.webhooks.base import Adapter, each_item, epoch_ms, unmapped
from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item, digest_id, message
from segflow.collect.webhooks.exceptions import BadSignature, Unmapped

SENDGRID_EVENTS = {
    "processed": "Email Sent",
    "delivered": "Email Delivered",
    "deferred": "Email Deferred",
    "dropped": "Email Dropped",
    "bounce": "Email Bounced",
    "open": "Email Opened",
    "click": "Email Link Clicked",
    "spamreport": "Email Marked as Spam",
    "unsubscribe": "Email Unsubscribed",
    "group_unsubscribe": "Email Unsubscribed",
    "group_resubscribe": "Email Subscribed",
}
PROPERTIES = {
    "sg_message_id": "email_id", "url": "url", "reason": "reason", "category": "category",
    "asm_group_id": "group_id", "marketing_campaign_id": "campaign_id", "type": "bounce_type",
}  # fmt: skip


@functools.lru_cache(maxsize=64)
def _key(text: str) -> ec.EllipticCurvePublicKey:
    return signatures.load_public_key(text)


def verify(delivery: Delivery, config: WebhookConfig, secret: str | None, now_ms: int) -> None:
    if not config.public_key:
        raise BadSignature("public_key", "no SendGrid verification key is configured")
    signatures.sendgrid(
        delivery.headers.get("x-twilio-email-event-webhook-signature"),
        delivery.headers.get("x-twilio-email-event-webhook-timestamp"),
        delivery.body,
        _key(config.public_key),
        now_ms=now_ms,
        tolerance_s=config.tolerance_s,
    )


def _one(event: Any, received_at_ms: int) -> Item:
    if not isinstance(event, dict) or "event" not in event:
        return Unmapped("event", "not a SendGrid event"), event
    name = SENDGRID_EVENTS.get(str(event["event"]))
    if name is None:
        return unmapped("sendgrid", "event", str(event["event"])), event
    event_id = event.get("sg_event_id") or digest_id("sendgrid", sorted(event.items()))
    props = {p: event[f] for f, p in PROPERTIES.items() if event.get(f) is not None}
    try:
        built = message(
            "sendgrid",
            f"sendgrid:{event_id}" if "sg_event_id" in event else event_id,
            epoch_ms(event.get("timestamp"), received_at_ms),
            event=name,
            email=event.get("email"),
            properties=props,
        )
    except Unmapped as exc:
        return exc, event
    return built, event


items = each_item("sendgrid", _one)


ADAPTER = Adapter("sendgrid", verify, items, needs_secret=False)
