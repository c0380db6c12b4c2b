"""Seeded Segment payloads for the collection benchmarks (~500-byte events, batches of 100).

>>> len(event_json(random.Random(1), "m1")) > 400
True
"""

from __future__ import annotations

import json
import random

EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Signed Up"]
PLACEHOLDER = b"@@@@@@@@@@"


def event(rng: random.Random, message_id: str) -> dict[str, object]:
    """One track event of about 500 bytes, as analytics.js would send it."""
    user = rng.randrange(100_000)
    return {
        "type": "track",
        "messageId": message_id,
        "userId": f"user-{user}",
        "anonymousId": f"anon-{user:08x}-{rng.randrange(1 << 30):08x}",
        "event": rng.choice(EVENTS),
        "properties": {
            "product_id": f"sku-{rng.randrange(5000)}",
            "price": round(rng.uniform(1, 300), 2),
            "currency": "USD",
            "quantity": rng.randrange(1, 5),
            "category": "Shoes",
        },
        "context": {
            "ip": "203.0.113.7",
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "page": {"path": "/products/shoes", "url": "https://shop.example/products/shoes"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
        },
        "timestamp": "2024-05-01T12:00:00.000Z",
        "sentAt": "2024-05-01T12:00:00.120Z",
    }


def event_json(rng: random.Random, message_id: str) -> bytes:
    return json.dumps(event(rng, message_id)).encode()


def batch_template(seed: int = 7, size: int = 100) -> bytes:
    """A ``/v1/batch`` body whose messageIds contain :data:`PLACEHOLDER` (fill per request)."""
    rng = random.Random(seed)
    msgs = [event(rng, f"{PLACEHOLDER.decode()}-{i:03d}") for i in range(size)]
    return json.dumps({"batch": msgs}).encode()


def fill(template: bytes, n: int) -> bytes:
    """The template with unique messageIds for request ``n``."""
    return template.replace(PLACEHOLDER, b"%010d" % n)


def batches(count: int, seed: int = 7, size: int = 100) -> list[bytes]:
    template = batch_template(seed, size)
    return [fill(template, n) for n in range(count)]
