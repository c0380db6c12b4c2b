"""Stripe events (``Stripe-Signature``, 300 s window) -> spec messages.

>>> [STRIPE_EVENTS[t] for t in ("charge.succeeded", "customer.subscription.deleted")]
['Order Completed', 'Subscription Cancelled']
"""

from __future__ import annotations

from typing import Any

from segflow.collect.webhooks import signatures
from segflow.collect.webhooks.base import Adapter, epoch_ms, need, parse_json, unmapped
from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item, message
from segflow.collect.webhooks.exceptions import Unmapped

STRIPE_EVENTS = {
    "charge.succeeded": "Order Completed",
    "charge.refunded": "Order Refunded",
    "charge.failed": "Payment Failed",
    "invoice.paid": "Invoice Paid",
    "invoice.payment_failed": "Payment Failed",
    "checkout.session.completed": "Checkout Completed",
    "customer.subscription.created": "Subscription Started",
    "customer.subscription.updated": "Subscription Updated",
    "customer.subscription.deleted": "Subscription Cancelled",
    # a customer deleted in Stripe: a track event on the person, not a deletion of the profile
    # (erasing a person is a privacy request: docs/privacy.md)
    "customer.deleted": "Customer Deleted",
}
IDENTIFY = frozenset({"customer.created", "customer.updated"})
# Stripe amounts are in the currency's minor unit, except for these currencies
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
# object field -> property, per object kind (amounts converted to major units)
PROPERTIES = {
    "charge": {"id": "order_id", "amount": "total", "currency": "currency", "payment_intent": "payment_intent"},
    "invoice": {"id": "invoice_id", "amount_paid": "total", "currency": "currency", "subscription": "subscription_id"},
    "checkout.session": {"id": "checkout_id", "amount_total": "total", "currency": "currency"},
    "subscription": {"id": "subscription_id", "status": "status", "currency": "currency"},
    "customer": {"id": "customer_id"},
}  # fmt: skip
EMAIL_PATHS = ("email", "receipt_email", "customer_email", "billing_details", "customer_details")


def _email(obj: dict[str, Any]) -> Any:
    for key in EMAIL_PATHS:
        value = obj.get(key)
        if isinstance(value, dict):
            value = value.get("email")
        if isinstance(value, str) and value:
            return value
    return None


def _properties(obj: dict[str, Any]) -> dict[str, Any]:
    wanted = PROPERTIES.get(str(obj.get("object")), {})
    out = {prop: obj[field] for field, prop in wanted.items() if obj.get(field) is not None}
    currency = str(obj.get("currency") or "").lower()
    if isinstance(out.get("total"), int):
        out["total"] = out["total"] if currency in ZERO_DECIMAL else out["total"] / 100
        out["revenue"] = out["total"]
    if currency:
        out["currency"] = currency.upper()
    return out


def verify(delivery: Delivery, config: WebhookConfig, secret: str | None, now_ms: int) -> None:
    signatures.stripe(
        delivery.headers.get("stripe-signature"),
        delivery.body,
        need(secret, "stripe"),
        now_ms=now_ms,
        tolerance_s=config.tolerance_s,
    )


def items(delivery: Delivery, config: WebhookConfig) -> list[Item]:
    event = parse_json(delivery.body, "stripe")
    data = event.get("data") if isinstance(event, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(event.get("id"), str):
        return [(Unmapped("data.object", "not a Stripe event (no id or data.object)"), event)]
    kind = event.get("type")
    name = STRIPE_EVENTS.get(kind)
    if name is None and kind not in IDENTIFY:
        return [(unmapped("stripe", "type", str(kind)), event)]
    customer = obj.get("id") if obj.get("object") == "customer" else obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    at_ms = epoch_ms(event.get("created"), delivery.received_at_ms)
    traits = {"name": obj.get("name")} if name is None and obj.get("name") else {}
    try:
        return [
            (
                message(
                    "stripe",
                    f"stripe:{event['id']}",
                    at_ms,
                    event=name,
                    email=_email(obj),
                    ids={"stripe_customer_id": customer},
                    properties={**_properties(obj), "stripe_event_type": kind},
                    traits=traits,
                ),
                event,
            )
        ]
    except Unmapped as exc:
        return [(exc, event)]


ADAPTER = Adapter("stripe", verify, items)
