"""A tracking-plan refusal names the property's path in ``field`` (issue #17), whatever the
property is called."""

from __future__ import annotations

from segflow.collect.exceptions import PlanViolation
from segflow.collect.plans import EventSpec, PropertySpec, TrackingPlan, check, check_fields

PLAN = TrackingPlan(
    mode="block",
    events={
        "Paid": EventSpec(properties={"price: usd": PropertySpec(type="number", required=True)})
    },
)


def test_the_field_is_the_propertys_path_even_with_a_colon_in_its_name() -> None:
    refused = PlanViolation(check_fields(PLAN, "track", "Paid", {"price: usd": "9"}))
    assert (refused.field, refused.reason) == (
        "properties.price: usd",
        "expected number, got string",
    )
    assert refused.violations == check(PLAN, "track", "Paid", {"price: usd": "9"})


def test_an_unplanned_event_is_the_event_field() -> None:
    refused = PlanViolation(check_fields(PLAN, "track", "Refunded", {}))
    assert (refused.field, refused.reason) == (
        "event",
        "event 'Refunded' is not in the tracking plan",
    )
