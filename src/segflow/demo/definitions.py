"""The segments and computed traits the demo defines: docs/segments.md's examples, written
against the simulated shop's events (``segflow.demo.simulator``).

>>> from segflow.rules import compile_segments
>>> sorted(compile_segments(SEGMENTS, TRAITS).plan.order)[:3]
['abandoned_cart', 'big_spenders', 'dormant']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from segflow.ml.live import DEFAULT_LIVE_FEATURES

TRAITS: dict[str, str] = {
    "orders_90d": 'count("Order Completed" in last 90 days)',
    "lifetime_revenue": 'sum(revenue of "Order Completed")',
    "favourite_category": 'most_frequent(category of "Product Viewed")',
    "categories_seen": 'unique_list(category of "Product Viewed")',
    "viewed_products": 'unique_list(name of "Product Viewed" in last 1 day)',
    "cart_products": 'unique_list(name of "Product Added" in last 1 day)',
}

SEGMENTS: dict[str, str] = {
    "viewed_3_in_hour": 'did "Product Viewed" at least 3 times in last 1 hour',
    "wishlist_not_compare": (
        'did "Feature Used" where feature = "wishlist"'
        ' and not did "Feature Used" where feature = "compare"'
    ),
    "emailed_no_order": 'did "Email Link Clicked" in last 30 days and not did "Order Completed"',
    "abandoned_cart": 'did "Product Added" then not "Order Completed" within 1 hour',
    "frequent_visitors": "did any event on at least 8 of last 30 days",
    "big_spenders": (
        'sum(revenue of "Order Completed" in last 90 days) >= 400\n'
        'and avg(revenue of "Order Completed" in last 90 days) > 100'
    ),
    "dormant": "not did any event in last 14 days",
    "viewed_added_no_order": (
        'did "Product Viewed" then "Product Added" within 30 minutes then not "Order Completed"'
    ),
    "shoe_explorers": (
        'unique_count(category of "Product Viewed" in last 7 days) >= 3\n'
        'and most_frequent(category of "Product Viewed" in last 7 days) = "shoes"'
    ),
    "engaged_not_dormant": (
        '(in segment "frequent_visitors" or in segment "big_spenders") and not in segment "dormant"'
    ),
    "ordered_30_to_90_days_ago": 'did "Order Completed" between 90 and 30 days ago',
    "loyal_shoe_buyers": 'computed orders_90d >= 2 and computed favourite_category = "shoes"',
}

DESCRIPTIONS: dict[str, str] = {
    "footwear_prospect": "New prospect - high intent - footwear",
    "abandoned_cart": "Abandoned cart: added, no order within 1 hour",
    "high_bundle_propensity": "High bundle-purchase propensity (live model)",
}

CLUSTER_MODEL = "customer_segments"
VISITOR_FEATURES: dict[str, str] = {
    "footwear_1d": (
        'count(any event where (category = "shoes" or query contains "shoes") in last 1 day)'
    ),
    "other_views_1d": 'count("Product Viewed" where category != "shoes" in last 1 day)',
    "events_1d": "count(any event in last 1 day)",
    "events_30d": "count(any event in last 30 days)",
    "orders_90d": 'count("Order Completed" in last 90 days)',
}
"""The live K-Means' features: today's footwear interest (shoe views, adds and searches) against
today's other product views, beside activity and orders, so that a visitor browsing shoes today
falls in a cluster of her own whatever her history."""

LIVE_MODELS: dict[str, dict[str, object]] = {
    # discovered segments, assigned in the stream: footwear_prospect is one of them
    CLUSTER_MODEL: {"kind": "cluster", "k": 5, "feature_traits": VISITOR_FEATURES},
    # scored in the stream on the default live features (docs/ml.md, "Scoring on the fly")
    "bundle_72h": {
        "kind": "propensity",
        "learner": "logistic",
        "target": '"Order Completed" in 2+ distinct category within 72 hours',
        "feature_traits": dict(DEFAULT_LIVE_FEATURES),
    },
}
"""The demo's models applied on the fly (``PUT /api/v1/models/{name}`` bodies)."""


SCORE_SEGMENTS: dict[str, str] = {
    # the bundle model's top decile, by rank in its latest scoring run: a fixed threshold such
    # as its 90th percentile held ~78% of the profiles, whose scores tie at that value
    "high_bundle_propensity": "score bundle_72h in top 10%",
    "churn_risk": 'score churn >= 0.7 and did "Order Completed"',
}


def footwear_cluster(cards: Iterable[Mapping[str, Any]]) -> int:
    """The discovered cluster of footwear browsers: the one whose centroid has the most
    footwear events today (``cards`` as a cluster run's ``metrics["cards"]``).

    >>> footwear_cluster([{"cluster": 0, "centroid": {"footwear_1d": 0.1}},
    ...                   {"cluster": 3, "centroid": {"footwear_1d": 3.2}}])
    3
    """
    best = max(cards, key=lambda card: float(card["centroid"]["footwear_1d"]))
    return int(best["cluster"])


def cluster_segments(footwear: int) -> dict[str, str]:
    """Segments on the discovered clusters, defined once the cluster model has run.

    >>> cluster_segments(3)["footwear_prospect"]
    'cluster id of model customer_segments = 3'
    """
    return {"footwear_prospect": f"cluster id of model {CLUSTER_MODEL} = {footwear}"}


def score_segments() -> dict[str, str]:
    """Segments on the models' outputs, defined once the models have run.

    >>> score_segments()["high_bundle_propensity"]
    'score bundle_72h in top 10%'
    """
    return dict(SCORE_SEGMENTS)
