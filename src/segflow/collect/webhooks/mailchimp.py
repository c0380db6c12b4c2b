"""Mailchimp audience webhooks -> spec messages.

Mailchimp signs nothing: the webhook URL carries a secret (``?secret=``) that segflow
compares with the configured one. Payloads are form-encoded (``type=subscribe&data[email]=``);
Mailchimp checks a URL with a ``GET`` before it saves it (answered 200 when the secret is right).

>>> fields = form(b"type=subscribe&data%5Bemail%5D=a%40b.c&data%5Bmerges%5D%5BFNAME%5D=Ann")
>>> fields["data[email]"], fields["data[merges][FNAME]"]
('a@b.c', 'Ann')
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

from segflow.collect.webhooks import signatures
from segflow.collect.webhooks.base import Adapter, need, unmapped
from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item, digest_id, message
from segflow.collect.webhooks.exceptions import Unmapped

MAILCHIMP_EVENTS = {
    "subscribe": "Email Subscribed",
    "unsubscribe": "Email Unsubscribed",
    "cleaned": "Email Bounced",
}
IDENTIFY = frozenset({"profile", "upemail"})
MERGES = {"FNAME": "firstName", "LNAME": "lastName", "PHONE": "phone"}


def form(body: bytes) -> dict[str, str]:
    """A form-encoded body as ``{name: first value}``; raises :class:`Unmapped` if it is not."""
    try:
        return dict(
            parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise Unmapped("", f"the mailchimp payload is not form-encoded: {exc}") from None


def verify(delivery: Delivery, config: WebhookConfig, secret: str | None, now_ms: int) -> None:
    signatures.same_secret(delivery.query.get("secret"), need(secret, "mailchimp"), "secret")


def _fired_ms(text: str | None, default: int) -> int:
    try:
        return int(datetime.fromisoformat(text or "").replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return default


def items(delivery: Delivery, config: WebhookConfig) -> list[Item]:
    fields = form(delivery.body)
    kind = fields.get("type", "")
    name = MAILCHIMP_EVENTS.get(kind)
    if name is None and kind not in IDENTIFY:
        return [(unmapped("mailchimp", "type", kind), fields)]
    new = "new_" if kind == "upemail" else ""
    traits = {
        t: fields[f"data[merges][{m}]"] for m, t in MERGES.items() if f"data[merges][{m}]" in fields
    }
    props = {"list_id": fields.get("data[list_id]")}
    for extra in ("reason", "campaign_id"):
        if f"data[{extra}]" in fields:
            props[extra] = fields[f"data[{extra}]"]
    try:
        built = message(
            "mailchimp",
            digest_id("mailchimp", delivery.body),  # no delivery id: a retry sends the same body
            _fired_ms(fields.get("fired_at"), delivery.received_at_ms),
            event=name,
            email=fields.get(f"data[{new}email]"),
            ids={"mailchimp_member_id": fields.get(f"data[{new}id]")},
            properties=props,
            traits=traits if name is None else {},
        )
    except Unmapped as exc:
        return [(exc, fields)]
    return [(built, fields)]


ADAPTER = Adapter("mailchimp", verify, items)
