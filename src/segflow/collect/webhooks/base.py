"""What every vendor adapter provides, and the helpers they share.

An adapter is a module-level object with ``vendor``, ``verify`` (raise :class:`BadSignature`),
``items`` (the delivery's items as spec messages or :class:`Unmapped`) and ``answer`` (what the
vendor expects back once the messages are stored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from segflow.collect.webhooks.config import WebhookConfig
from segflow.collect.webhooks.delivery import Delivery, Item
from segflow.collect.webhooks.exceptions import BadSignature, Unmapped

_YEAR_10000_MS = 253_402_300_800_000
# (status, content type, body) of a successful answer
Answer = tuple[int, bytes, bytes]


def json_answer(summary: dict[str, Any]) -> Answer:
    return 200, b"application/json", msgspec.json.encode(summary)


@dataclass(frozen=True)
class Adapter:
    """One vendor: ``verify(delivery, config, secret, now_ms)`` and ``items(delivery, config)``."""

    vendor: str
    verify: Callable[[Delivery, WebhookConfig, str | None, int], None]
    items: Callable[[Delivery, WebhookConfig], list[Item]]
    answer: Callable[[dict[str, Any]], Answer] = json_answer
    needs_secret: bool = True


def need(secret: str | None, vendor: str) -> str:
    """The configured secret, or a 401 saying it is missing."""
    if not secret:
        raise BadSignature("secret", f"no {vendor} secret is configured on this source")
    return secret


def parse_json(body: bytes, vendor: str) -> Any:
    """The body as JSON, or :class:`Unmapped` (a dead letter, 400)."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise Unmapped("", f"the {vendor} payload is not JSON: {exc}") from None


def each_item(
    vendor: str, one: Callable[[Any, int], Item]
) -> Callable[[Delivery, WebhookConfig], list[Item]]:
    """An adapter's ``items`` for vendors that post a JSON array of events (or one event):
    ``one(event, received_at_ms)`` maps each.

    >>> from segflow.collect.webhooks.delivery import Delivery
    >>> items = each_item("v", lambda e, at: (e["n"], at))
    >>> d = Delivery(vendor="v", method="POST", url="/", body=b'[{"n": 1}, {"n": 2}]', received_at_ms=7)
    >>> items(d, None)
    [(1, 7), (2, 7)]
    """

    def items(delivery: Delivery, config: WebhookConfig) -> list[Item]:
        payload = parse_json(delivery.body, vendor)
        events = payload if isinstance(payload, list) else [payload]
        return [one(e, delivery.received_at_ms) for e in events]

    return items


def unmapped(vendor: str, kind: str, what: str) -> Unmapped:
    """The reason a known payload is not mapped (``kind`` names the field that decided)."""
    return Unmapped(kind, f"{vendor} {kind} {what!r} is not mapped (docs/webhooks.md)")


def epoch_ms(value: Any, default: int) -> int:
    """Unix seconds or milliseconds (numbers or digit strings) as ms; ``default`` otherwise.

    >>> epoch_ms(1_700_000_000, 0), epoch_ms("1700000000123", 0), epoch_ms("x", 5), epoch_ms(1e300, 5)
    (1700000000000, 1700000000123, 5, 5)
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    ms = value * 1000 if value < 100_000_000_000 else value
    return int(ms) if 0 <= ms < _YEAR_10000_MS else default  # NaN and 1e300 too
