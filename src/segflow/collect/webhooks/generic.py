"""The generic webhook: a declarative mapping (paths in the payload -> spec fields) for the
tools segflow has no adapter for. Signed with an optional HMAC-SHA256 of the body.

>>> from segflow.collect.webhooks.config import GenericMapping
>>> m = GenericMapping(event="kind", message_id="id", email="who.email")
>>> msg, _ = map_item({"kind": "Plan Upgraded", "id": "e1", "who": {"email": "a@b.c"}}, m, 0)[0]
>>> msg["event"], msg["messageId"], msg["context"]["traits"]["email"]
('Plan Upgraded', 'generic:e1', 'a@b.c')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from segflow.collect.webhooks import signatures
from segflow.collect.webhooks.base import Adapter, epoch_ms, parse_json
from segflow.collect.webhooks.config import GenericMapping, WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item, dig, digest_id, message
from segflow.collect.webhooks.exceptions import Unmapped


def verify(delivery: Delivery, config: WebhookConfig, secret: str | None, now_ms: int) -> None:
    if secret:  # without a secret, the write key alone admits the delivery
        header = config.signature_header.lower()
        signatures.generic(delivery.headers.get(header), header, delivery.body, secret)


def _time(value: Any, default: int) -> int:
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            return int(
                datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp() * 1000
            )
        except ValueError:
            return default
    return epoch_ms(value, default)


def _present(item: Any, paths: dict[str, str]) -> dict[str, Any]:
    """``name -> value`` of the paths found in ``item`` (a missing path adds no key)."""
    found = {name: dig(item, path) for name, path in paths.items()}
    return {name: value for name, value in found.items() if value is not None}


def map_item(item: Any, mapping: GenericMapping, received_at_ms: int) -> list[Item]:
    """One payload item as a spec message, by ``mapping``."""
    name = mapping.event_name or (dig(item, mapping.event) if mapping.event else None)
    if mapping.type == "track" and not isinstance(name, str):
        return [(Unmapped(mapping.event or "event", "no event name at this path"), item)]
    given_id = dig(item, mapping.message_id) if mapping.message_id else None
    message_id = (
        f"generic:{given_id}"
        if isinstance(given_id, str | int) and not isinstance(given_id, bool)
        else digest_id("generic", msgspec.json.encode(item))
    )
    try:
        built = message(
            "generic",
            message_id,
            _time(dig(item, mapping.timestamp), received_at_ms)
            if mapping.timestamp
            else received_at_ms,
            event=name if mapping.type == "track" else None,
            email=dig(item, mapping.email) if mapping.email else None,
            ids={t: dig(item, p) for t, p in mapping.identifiers.items()},
            properties=_present(item, mapping.properties),
            traits=_present(item, mapping.traits),
            user_id=dig(item, mapping.user_id) if mapping.user_id else None,
            anonymous_id=dig(item, mapping.anonymous_id) if mapping.anonymous_id else None,
        )
    except Unmapped as exc:
        return [(exc, item)]
    return [(built, item)]


def items(delivery: Delivery, config: WebhookConfig) -> list[Item]:
    if config.mapping is None:
        raise Unmapped("mapping", "this generic webhook source has no mapping configured")
    payload = parse_json(delivery.body, "generic")
    found = dig(payload, config.mapping.items) if config.mapping.items else [payload]
    if not isinstance(found, list):
        return [(Unmapped(config.mapping.items or "", "not a list in the payload"), payload)]
    return [i for item in found for i in map_item(item, config.mapping, delivery.received_at_ms)]


ADAPTER = Adapter("generic", verify, items, needs_secret=False)
