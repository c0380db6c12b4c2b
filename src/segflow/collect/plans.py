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


def _check_property(name: str, spec: PropertySpec, props: dict[str, Any]) -> list[str]:
    if name not in props:
        return [f"properties.{name}: required"] if spec.required else []
    value = props[name]
    actual = _json_type(value)
    if spec.type is not None and not _type_ok(spec.type, actual):
        return [f"properties.{name}: expected {spec.type}, got {actual}"]
    if spec.enum is not None and value not in spec.enum:
        return [f"properties.{name}: {value!r} is not one of {list(spec.enum)!r}"]
    return []


def check(
    plan: TrackingPlan, call: str, event: str | None, properties: dict[str, Any]
) -> list[str]:
    """The violations of one message (empty when it follows the plan). Only ``track`` calls
    are checked against the plan's events."""
    if call != "track" or event is None:
        return []
    spec = plan.events.get(event)
    if spec is None:
        return (
            [] if plan.allow_unplanned_events else [f"event {event!r} is not in the tracking plan"]
        )
    out: list[str] = []
    for name, prop in spec.properties.items():
        out.extend(_check_property(name, prop, properties))
    if not spec.allow_unplanned_properties:
        out.extend(
            f"properties.{k}: not in the tracking plan"
            for k in properties
            if k not in spec.properties
        )
    return out
