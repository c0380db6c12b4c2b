"""One webhook delivery as its adapter sees it, and the spec messages adapters build.

>>> m = message("stripe", "evt_1", 1_700_000_000_000, event="Order Completed",
...             email="Ann@Example.com", ids={"stripe_customer_id": "cus_1"})
>>> m["anonymousId"], m["context"]["traits"], m["context"]["externalIds"][0]["type"]
('stripe:cus_1', {'email': 'ann@example.com'}, 'stripe_customer_id')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from segflow.collect.webhooks.exceptions import Unmapped


@dataclass(frozen=True)
class Delivery:
    """A request to ``/v1/webhooks/{vendor}``: ``url`` as the vendor called it (HubSpot signs
    it), header names in lower case, the first value of each query parameter."""

    vendor: str
    method: str
    url: str
    body: bytes
    received_at_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


# what an adapter makes of one item of a delivery: a message, or why not, with the item's text
Item = tuple[dict[str, Any] | Unmapped, Any]


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC (``iso(0) == '1970-01-01T00:00:00.000Z'``)."""
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def digest_id(vendor: str, *parts: Any) -> str:
    """A deterministic message id for vendors that send no event id (a retry hashes alike).

    >>> digest_id("mailchimp", "subscribe", "a@b.c") == digest_id("mailchimp", "subscribe", "a@b.c")
    True
    """
    text = "\0".join(str(p) for p in parts)
    return f"{vendor}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def message(
    vendor: str,
    message_id: str,
    at_ms: int,
    *,
    event: str | None = None,
    email: Any = None,
    ids: Mapping[str, Any] | None = None,
    properties: Mapping[str, Any] | None = None,
    traits: Mapping[str, Any] | None = None,
    user_id: Any = None,
    anonymous_id: Any = None,
) -> dict[str, Any]:
    """A spec message: ``track`` when ``event`` is given, else ``identify``.

    The person is the email (``context.traits.email``, lower-cased) and the vendor's ids
    (``context.externalIds``); ``anonymousId`` is ``vendor:first id`` (or ``vendor:email``),
    as the spec requires one. Raises :class:`Unmapped` when the payload names nobody.
    """
    found = {  # ids are text or numbers: anything else names nobody
        k: str(v)
        for k, v in (ids or {}).items()
        if isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip()
    }
    email_text = email.strip().lower() if isinstance(email, str) and email.strip() else None
    anchor = next(iter(found.values()), None) or email_text
    if anchor is None and user_id in (None, "") and anonymous_id in (None, ""):
        raise Unmapped("email", f"no person in the {vendor} payload (no email, no {vendor} id)")
    context: dict[str, Any] = {"integration": {"name": vendor}}
    if email_text:
        context["traits"] = {"email": email_text}
    if found:
        context["externalIds"] = [
            {"id": v, "type": t, "collection": "users", "encoding": "none"}
            for t, v in found.items()
        ]
    out: dict[str, Any] = {
        "type": "track" if event else "identify",
        "messageId": message_id,
        "anonymousId": f"{vendor}:{anchor}" if anonymous_id in (None, "") else anonymous_id,
        "timestamp": iso(at_ms),
        "context": context,
    }
    if user_id not in (None, ""):
        out["userId"] = user_id
        if anonymous_id in (None, "") and anchor is None:
            del out["anonymousId"]
    if event:
        out["event"] = event
        out["properties"] = dict(properties or {})
    else:
        out["traits"] = {**(traits or {}), **({"email": email_text} if email_text else {})}
    return out


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path (list indexes as numbers), or ``None``.

    >>> dig({"a": {"b": [{"c": 1}]}}, "a.b.0.c"), dig({"a": 1}, "a.b")
    (1, None)
    """
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif (
            isinstance(node, list)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node[int(part)]
        else:
            return None
    return node
