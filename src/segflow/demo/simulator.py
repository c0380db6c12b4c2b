"""A seeded simulator of an e-commerce business, producing Segment-spec messages.

People follow personas with real structure (spend, frequency, feature usage, churn, support
load), so the warehouse features, the clusters and the propensity models find something real.
Everything comes from one ``random.Random(seed)``: the same seed gives the same messages.

>>> sim = Simulator(people=5, seed=7)
>>> msgs = sim.history(end_ms=1_700_000_000_000, days=3)
>>> msgs == Simulator(people=5, seed=7).history(end_ms=1_700_000_000_000, days=3)
True
>>> all("userId" in m or "anonymousId" in m for m in msgs)
True
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from segflow.clock import DAY_MS, HOUR_MS, MINUTE_MS
from segflow.demo.catalog import (
    CAMPAIGNS,
    CATEGORIES,
    FEATURES,
    PRODUCTS_BY_CATEGORY,
    SEARCH_TERMS,
    UTM_SOURCES,
    Product,
)

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    visits_per_day: float
    buy_rate: float  # probability that a session with a cart ends in an order
    cart_rate: float  # probability that a session adds to cart
    categories: tuple[str, ...]
    feature_rate: float
    email_rate: float
    ticket_rate: float
    login_rate: float  # share of people of this persona who have an account
    churn_after_days: float | None = None


PERSONAS: tuple[Persona, ...] = (
    Persona(
        "high_spender",
        0.45,
        0.75,
        0.8,
        ("jackets", "accessories", "shoes", "bags"),
        0.1,
        0.3,
        0.02,
        1.0,
    ),
    Persona(
        "bargain_browser", 0.5, 0.15, 0.35, ("shoes", "pants", "accessories"), 0.05, 0.5, 0.01, 0.7
    ),
    Persona("feature_explorer", 0.6, 0.1, 0.2, ("shoes", "accessories"), 0.9, 0.2, 0.02, 0.9),
    Persona("churner", 0.5, 0.4, 0.5, ("shoes", "pants"), 0.2, 0.3, 0.08, 0.9, churn_after_days=10),
    Persona("support_heavy", 0.3, 0.5, 0.6, ("bags", "jackets"), 0.1, 0.2, 0.5, 1.0),
    Persona("window_shopper", 0.25, 0.0, 0.15, CATEGORIES, 0.02, 0.0, 0.0, 0.0),
)
PERSONA_WEIGHTS = (0.12, 0.25, 0.13, 0.15, 0.08, 0.27)


@dataclass(slots=True)
class Person:
    index: int
    persona: Persona
    devices: list[str]
    user_id: str | None
    email: str | None
    plan: str
    created_ms: int
    identified: bool = False
    seq: int = 0
    viewed: list[Product] = field(default_factory=list)


def iso(ms: int) -> str:
    """Epoch milliseconds as the ISO-8601 UTC string Segment SDKs send."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class Simulator:
    """Generates people and their sessions; ``history`` for the backfill, ``session`` for live traffic."""

    def __init__(self, people: int = 2000, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.people = [self._person(i) for i in range(people)]

    def _person(self, i: int) -> Person:
        rng = self.rng
        persona = rng.choices(PERSONAS, PERSONA_WEIGHTS)[0]
        has_account = rng.random() < persona.login_rate
        devices = [f"anon-{self.seed}-{i}-{d}" for d in range(rng.choice((1, 1, 2, 3)))]
        return Person(
            index=i,
            persona=persona,
            devices=devices,
            user_id=f"user-{i}" if has_account else None,
            email=f"person{i}@example.com" if has_account else None,
            plan=rng.choice(("free", "free", "pro")) if has_account else "free",
            created_ms=0,
        )

    def history(self, *, end_ms: int, days: int) -> list[Message]:
        """Every person's sessions over ``days`` days ending at ``end_ms``, sorted by time."""
        start_ms = end_ms - days * DAY_MS
        out: list[Message] = []
        for person in self.people:
            person.created_ms = start_ms - int(self.rng.random() * 60 * DAY_MS)
            for day in range(days):
                churned = (
                    person.persona.churn_after_days is not None
                    and day > person.persona.churn_after_days
                )
                rate = person.persona.visits_per_day * (0.05 if churned else 1.0)
                for _ in range(self._poisson(rate)):
                    at = start_ms + day * DAY_MS + int(self.rng.random() * DAY_MS)
                    out.extend(m for m in self.session(person, at) if _ts(m) <= end_ms)
        out.sort(key=_ts)
        return out

    def live(self, now_ms: int) -> list[Message]:
        """One session of a random (not churned) person starting at ``now_ms``, compressed to seconds."""
        person = self.rng.choice(self.people)
        return self.session(person, now_ms, step_ms=self.rng.randint(50, 400))

    def _poisson(self, lam: float) -> int:
        n, p, threshold = 0, 1.0, pow(2.718281828459045, -lam)
        while True:
            p *= self.rng.random()
            if p < threshold:
                return n
            n += 1

    def session(self, person: Person, at_ms: int, *, step_ms: int | None = None) -> list[Message]:
        """One visit: browse, maybe search, add to cart, buy, use features, open email, file a ticket."""
        rng, persona = self.rng, person.persona
        clock = _Cursor(at_ms, step_ms or rng.randint(20_000, 90_000), rng)
        device = rng.choice(person.devices)
        channel = "mobile" if device.endswith("-1") else "web"
        ctx: dict[str, Any] = {
            "channel": channel,
            "library": {"name": "segflow-demo", "version": "1"},
        }
        if rng.random() < 0.3:
            ctx["campaign"] = {
                "source": rng.choice(UTM_SOURCES),
                "medium": "social",
                "name": rng.choice(CAMPAIGNS),
            }
        ids = self._ids(person, device)
        msgs: list[Message] = [
            self._msg(person, "page", ids, clock.next(), ctx, name="Home", properties={"path": "/"})
        ]
        category = rng.choice(persona.categories)
        if rng.random() < 0.4:
            term = rng.choice(SEARCH_TERMS[category])
            msgs.append(
                self._track(person, "Products Searched", ids, clock.next(), ctx, {"query": term})
            )
        for _ in range(rng.randint(1, 4)):
            product = rng.choice(PRODUCTS_BY_CATEGORY[category])
            person.viewed.append(product)
            msgs.append(
                self._track(
                    person, "Product Viewed", ids, clock.next(), ctx, _product_props(product)
                )
            )
            if rng.random() < 0.3:
                category = rng.choice(persona.categories)
        if rng.random() < persona.feature_rate:
            for feature in rng.sample(FEATURES, rng.randint(1, 3)):
                msgs.append(
                    self._track(
                        person, "Feature Used", ids, clock.next(), ctx, {"feature": feature}
                    )
                )
        if person.user_id and not person.identified and rng.random() < 0.6:
            person.identified = True
            ids = {"userId": person.user_id, "anonymousId": device}
            msgs.append(self._identify(person, ids, clock.next(), ctx))
        cart: list[Product] = []
        if person.viewed and rng.random() < persona.cart_rate:
            cart = rng.sample(person.viewed[-4:], min(len(person.viewed[-4:]), rng.randint(1, 2)))
            for product in cart:
                msgs.append(
                    self._track(
                        person, "Product Added", ids, clock.next(), ctx, _product_props(product)
                    )
                )
        if cart and person.user_id and rng.random() < persona.buy_rate:
            msgs.extend(self._order(person, cart, clock))
        if person.email and rng.random() < persona.email_rate:
            campaign = rng.choice(CAMPAIGNS)
            msgs.append(
                self._track(
                    person,
                    "Email Opened",
                    {"userId": person.user_id},
                    clock.next(),
                    {"channel": "server"},
                    {"campaign": campaign},
                )
            )
            if rng.random() < 0.4:
                msgs.append(
                    self._track(
                        person,
                        "Email Link Clicked",
                        {"userId": person.user_id},
                        clock.next(),
                        {"channel": "server"},
                        {"campaign": campaign},
                    )
                )
        if person.email and rng.random() < persona.ticket_rate:
            traits = {"email": person.email}
            msgs.append(
                self._track(
                    person,
                    "Support Ticket Created",
                    {"anonymousId": f"desk-{person.email}"},
                    clock.next(),
                    {"channel": "server", "traits": traits},
                    {
                        "subject": "Where is my order?",
                        "priority": rng.choice(("low", "normal", "high")),
                    },
                )
            )
        return msgs

    def _order(self, person: Person, cart: list[Product], clock: _Cursor) -> list[Message]:
        revenue = round(sum(p.price for p in cart), 2)
        props = {
            "order_id": f"o-{self.seed}-{person.index}-{person.seq}",
            "revenue": revenue,
            "currency": "USD",
            "products": [
                {"product_id": p.product_id, "category": p.category, "price": p.price} for p in cart
            ],
            "categories": sorted({p.category for p in cart}),
            "category": max(cart, key=lambda p: p.price).category,  # the order's main category
        }
        ids = {"userId": person.user_id}
        return [
            self._track(person, "Order Completed", ids, clock.next(), {"channel": "server"}, props)
        ]

    def _ids(self, person: Person, device: str) -> dict[str, str]:
        if person.identified and person.user_id:
            return {"userId": person.user_id, "anonymousId": device}
        return {"anonymousId": device}

    def _msg(
        self,
        person: Person,
        kind: str,
        ids: dict[str, Any],
        at_ms: int,
        ctx: dict[str, Any],
        **body: Any,
    ) -> Message:
        person.seq += 1
        msg: Message = {
            "type": kind,
            "messageId": f"demo-{self.seed}-{person.index}-{person.seq}",
            "timestamp": iso(at_ms),
            "context": ctx,
            **ids,
        }
        msg.update({k: v for k, v in body.items() if v is not None})
        return msg

    def _track(
        self,
        person: Person,
        event: str,
        ids: dict[str, Any],
        at_ms: int,
        ctx: dict[str, Any],
        props: dict[str, Any],
    ) -> Message:
        return self._msg(person, "track", ids, at_ms, ctx, event=event, properties=props)

    def _identify(
        self, person: Person, ids: dict[str, Any], at_ms: int, ctx: dict[str, Any]
    ) -> Message:
        traits = {
            "email": person.email,
            "plan": person.plan,
            "created_at": iso(person.created_ms),
            "persona_hint": person.persona.name,
        }
        return self._msg(person, "identify", ids, at_ms, ctx, traits=traits)


class _Cursor:
    """Moves forward through a session in random steps."""

    def __init__(self, start_ms: int, step_ms: int, rng: random.Random) -> None:
        self.at_ms, self.step_ms, self.rng = start_ms, step_ms, rng

    def next(self) -> int:
        self.at_ms += int(self.step_ms * (0.5 + self.rng.random()))
        return self.at_ms


def _product_props(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "name": product.name,
        "category": product.category,
        "price": product.price,
    }


def _ts(message: Message) -> int:
    return int(
        datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")).timestamp() * 1000
    )


def batches(messages: list[Message], size: int = 100) -> Iterator[list[Message]]:
    """Split messages into request-sized batches."""
    for i in range(0, len(messages), size):
        yield messages[i : i + size]


__all__ = ["HOUR_MS", "MINUTE_MS", "Message", "Simulator", "batches", "iso"]


STORY_ANONYMOUS_ID = "anon_123xyz"


def story(at_ms: int) -> list[Message]:
    """The mission's story, starting at ``at_ms``: an anonymous visitor from a social ad searches
    "trail running shoes", views a pair, adds it to the cart, browses women's jackets and leaves.

    >>> [m.get("event", m["type"]) for m in story(0)][:3]
    ['page', 'Products Searched', 'Product Viewed']
    """
    from segflow.demo.catalog import PRODUCTS

    by_id = {p.product_id: p for p in PRODUCTS}
    shoes, storm, shell = by_id["sku-trail-1"], by_id["sku-jkt-1"], by_id["sku-jkt-2"]
    ctx: dict[str, Any] = {
        "channel": "web",
        "campaign": {"source": "instagram", "medium": "social", "name": "trail_season"},
        "page": {"url": "https://shop.example/?utm_source=instagram"},
    }
    steps: list[tuple[str, str | None, dict[str, Any]]] = [
        ("page", None, {"name": "Home", "properties": {"path": "/"}}),
        ("track", "Products Searched", {"properties": {"query": "trail running shoes"}}),
        ("track", "Product Viewed", {"properties": _product_props(shoes)}),
        ("track", "Product Added", {"properties": _product_props(shoes)}),
        ("track", "Product Viewed", {"properties": _product_props(storm)}),
        ("track", "Product Viewed", {"properties": _product_props(shell)}),
    ]
    out: list[Message] = []
    for n, (kind, event, body) in enumerate(steps):
        msg: Message = {
            "type": kind,
            "messageId": f"story-{at_ms}-{n}",
            "anonymousId": STORY_ANONYMOUS_ID,
            "timestamp": iso(at_ms + n * 45_000),
            "context": ctx,
            **body,
        }
        if event:
            msg["event"] = event
        out.append(msg)
    return out
