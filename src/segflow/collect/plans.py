"""Tracking plans: per source, the allowed events and their properties.

A plan lists events; each event lists properties with ``required``, ``type`` (one of
``string``, ``number``, ``integer``, ``boolean``, ``object``, ``array``, ``null``) and
``enum`` (allowed values). ``mode`` decides what a violation does:

- ``allow``: store the event, count the violation;
- ``flag``: store the event with the violations in ``Event.violations``, and count;
- ``block``: refuse the message (400, dead-lettered), and count.

>>> plan = TrackingPlan(mode="flag", events={"Order Completed": EventSpec(properties={
...     "revenue": PropertySpec(type="number", required=True)})})
>>> check(plan, "track", "Order Completed", {"revenue": "12"})
['properties.revenue: expected number, got string']
>>> check(plan, "track", "Signed Up", {})
["event 'Signed Up' is not in the tracking plan"]
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PlanMode = Literal["allow", "flag", "block"]
PropertyType = Literal["string", "number", "integer", "boolean", "object", "array", "null"]


class PropertySpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: PropertyType | None = None
    required: bool = False
    enum: tuple[Any, ...] | None = None


# EventSpec and TrackingPlan keep their defaults when encoded: what `sources list` echoes is
# every setting that is enforced (allow_unplanned_events = false was dropped, being the default)
class EventSpec(msgspec.Struct, frozen=True, kw_only=True):
    properties: dict[str, PropertySpec] = {}
    allow_unplanned_properties: bool = True


class TrackingPlan(msgspec.Struct, frozen=True, kw_only=True):
    mode: PlanMode = "allow"
    events: dict[str, EventSpec] = {}
    allow_unplanned_events: bool = False


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"


def _type_ok(expected: str, actual: str) -> bool:
    return expected == actual or (expected == "number" and actual == "integer")


Found = tuple[str, str]  # (field, reason): ("properties.revenue", "required")


def _check_property(name: str, spec: PropertySpec, props: dict[str, Any]) -> list[Found]:
    field = f"properties.{name}"
    if name not in props:
        return [(field, "required")] if spec.required else []
    value = props[name]
    actual = _json_type(value)
    if spec.type is not None and not _type_ok(spec.type, actual):
        return [(field, f"expected {spec.type}, got {actual}")]
    if spec.enum is not None and value not in spec.enum:
        return [(field, f"{value!r} is not one of {list(spec.enum)!r}")]
    return []


def check_fields(
    plan: TrackingPlan, call: str, event: str | None, properties: dict[str, Any]
) -> list[Found]:
    """The violations of one message as ``(field, reason)``: the property's path, or
    ``event`` for an event the plan does not list. Only ``track`` calls are checked.

    >>> plan = TrackingPlan(events={"Paid": EventSpec(properties={
    ...     "price": PropertySpec(type="number")})})
    >>> check_fields(plan, "track", "Paid", {"price": "9"})
    [('properties.price', 'expected number, got string')]
    """
    if call != "track" or event is None:
        return []
    spec = plan.events.get(event)
    if spec is None:
        if plan.allow_unplanned_events:
            return []
        return [("event", f"event {event!r} is not in the tracking plan")]
    out: list[Found] = []
    for name, prop in spec.properties.items():
        out.extend(_check_property(name, prop, properties))
    if not spec.allow_unplanned_properties:
        out.extend(
            (f"properties.{k}", "not in the tracking plan")
            for k in properties
            if k not in spec.properties
        )
    return out


def describe(found: Found) -> str:
    """One violation as it is counted and flagged: ``properties.revenue: required``."""
    field, reason = found
    return reason if field == "event" else f"{field}: {reason}"


def check(
    plan: TrackingPlan, call: str, event: str | None, properties: dict[str, Any]
) -> list[str]:
    """The violations of one message (empty when it follows the plan), as text."""
    return [describe(f) for f in check_fields(plan, call, event, properties)]
