"""HubSpot webhooks (v3 signature: ``X-HubSpot-Signature-v3``, 5-minute window) -> spec messages.

A delivery is a JSON list of up to 100 subscription events. Contact events become track
calls; ``contact.propertyChange`` becomes an identify of that property (``email`` links the
contact to the person).

>>> HUBSPOT_EVENTS["contact.creation"]
'Contact Created'
"""

from __future__ import annotations

from typing import Any

from segflow.collect.webhooks import signatures
from segflow.collect.webhooks.base import Adapter, each_item, epoch_ms, need, unmapped
from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item, digest_id, message
from segflow.collect.webhooks.exceptions import Unmapped

HUBSPOT_EVENTS = {
    "contact.creation": "Contact Created",
    "contact.deletion": "Contact Deleted",
    "contact.restore": "Contact Restored",
}
IDENTIFY = frozenset({"contact.propertyChange"})


def verify(delivery: Delivery, config: WebhookConfig, secret: str | None, now_ms: int) -> None:
    signatures.hubspot(
        delivery.headers.get("x-hubspot-signature-v3"),
        delivery.headers.get("x-hubspot-request-timestamp"),
        delivery.method,
        delivery.url,
        delivery.body,
        need(secret, "hubspot"),
        now_ms=now_ms,
        tolerance_s=config.tolerance_s,
    )


def _one(event: Any, received_at_ms: int) -> Item:
    if not isinstance(event, dict) or "subscriptionType" not in event:
        return Unmapped("subscriptionType", "not a HubSpot event"), event
    kind = str(event["subscriptionType"])
    name = HUBSPOT_EVENTS.get(kind)
    if name is None and kind not in IDENTIFY:
        return unmapped("hubspot", "subscriptionType", kind), event
    prop, value = event.get("propertyName"), event.get("propertyValue")
    event_id = event.get("eventId")
    message_id = (
        f"hubspot:{event.get('portalId')}:{event_id}"
        if event_id is not None
        else digest_id("hubspot", sorted(event.items()))
    )
    try:
        built = message(
            "hubspot",
            message_id,
            epoch_ms(event.get("occurredAt"), received_at_ms),
            event=name,
            email=value if prop == "email" else None,
            ids={"hubspot_contact_id": event.get("objectId")},
            properties={
                "portal_id": event.get("portalId"),
                "change_source": event.get("changeSource"),
            },
            traits={str(prop): value} if name is None and prop and prop != "email" else {},
        )
    except Unmapped as exc:
        return exc, event
    return built, event


items = each_item("hubspot", _one)


ADAPTER = Adapter("hubspot", verify, items)
