"""Zendesk webhooks (``X-Zendesk-Webhook-Signature``) -> spec messages.

Two payload shapes: Zendesk's event webhooks (``"type": "zen:event-type:ticket.created"``,
``detail`` holding the ticket or user) and trigger webhooks whose JSON body carries
``"type": "ticket.created"`` and a ``ticket`` with its ``requester`` (docs/webhooks.md gives the
body to paste into the trigger; it names the requester's email, which event webhooks do not).

>>> ZENDESK_EVENTS["ticket.created"], ZENDESK_EVENTS["ticket.solved"]
('Ticket Created', 'Ticket Solved')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from segflow.collect.webhooks import signatures
from segflow.collect.webhooks.base import Adapter, need, parse_json, unmapped
from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item, dig, digest_id, message
from segflow.collect.webhooks.exceptions import Unmapped

ZENDESK_EVENTS = {
    "ticket.created": "Ticket Created",
    "ticket.updated": "Ticket Updated",
    "ticket.solved": "Ticket Solved",
    "ticket.status_changed": "Ticket Status Changed",
    "ticket.comment_added": "Ticket Comment Added",
}
IDENTIFY = frozenset({"user.created", "user.updated"})
TICKET_PROPERTIES = ("id", "subject", "status", "priority", "type", "via")
_PREFIX = "zen:event-type:"


def verify(delivery: Delivery, config: WebhookConfig, secret: str | None, now_ms: int) -> None:
    signatures.zendesk(
        delivery.headers.get("x-zendesk-webhook-signature"),
        delivery.headers.get("x-zendesk-webhook-signature-timestamp"),
        delivery.body,
        need(secret, "zendesk"),
        now_ms=now_ms,
        tolerance_s=config.tolerance_s,
    )


def _time_ms(value: Any, default: int) -> int:
    if not isinstance(value, str):
        return default
    try:
        return int(datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return default


def items(delivery: Delivery, config: WebhookConfig) -> list[Item]:
    payload = parse_json(delivery.body, "zendesk")
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return [(Unmapped("type", "not a Zendesk webhook payload (no type)"), payload)]
    event: dict[str, Any] = payload["event"] if isinstance(payload.get("event"), dict) else {}
    kind = payload["type"].removeprefix(_PREFIX)
    if kind == "ticket.status_changed" and str(event.get("current", "")).lower() == "solved":
        kind = "ticket.solved"
    if "ticket" in payload:  # a trigger's body
        ticket, person = payload["ticket"], dig(payload, "ticket.requester") or {}
        ids = {"zendesk_user_id": person.get("id")} if isinstance(person, dict) else {}
        email = person.get("email") if isinstance(person, dict) else None
        invocation = delivery.headers.get("x-zendesk-webhook-invocation-id")
        message_id = f"zendesk:{invocation}" if invocation else digest_id("zendesk", delivery.body)
        at_ms = _time_ms(
            ticket.get("updated_at") if isinstance(ticket, dict) else None, delivery.received_at_ms
        )
    else:  # an event webhook
        ticket = payload["detail"] if isinstance(payload.get("detail"), dict) else {}
        user = kind in IDENTIFY
        ids = {"zendesk_user_id": ticket.get("id" if user else "requester_id")}
        email = ticket.get("email") if user else None
        message_id = f"zendesk:{payload.get('id') or digest_id('zendesk', delivery.body)}"
        at_ms = _time_ms(payload.get("time"), delivery.received_at_ms)
    name = ZENDESK_EVENTS.get(kind)
    if name is None and kind not in IDENTIFY:
        return [(unmapped("zendesk", "type", kind), payload)]
    if not isinstance(ticket, dict):
        return [(Unmapped("ticket", "not an object"), payload)]
    props = {f"ticket_{k}" if k == "id" else k: ticket[k] for k in TICKET_PROPERTIES if k in ticket}
    traits = {"name": ticket["name"]} if name is None and ticket.get("name") else {}
    try:
        built = message(
            "zendesk", message_id, at_ms, event=name, email=email, ids=ids,
            properties=props, traits=traits,
        )  # fmt: skip
    except Unmapped as exc:
        return [(exc, payload)]
    return [(built, payload)]


ADAPTER = Adapter("zendesk", verify, items)
