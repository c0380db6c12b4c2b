"""Propensity targets in the segment language's terms, and their point-in-time labels in SQL.

Three shapes, written as the segment language writes windows::

    performs "Order Completed" within 7 days         -> 1 if the event happens in (T, T + 7d]
    no activity within 30 days                       -> 1 if no event at all in (T, T + 30d]  (churn)
    "Order Completed" in 2+ distinct category within 72 hours
                                                     -> 1 if those events span >= 2 values of
                                                        properties.category in (T, T + 72h]

>>> t = parse_target('performs "Order Completed" within 7 days')
>>> t.kind, t.event, t.within_ms
('performs', 'Order Completed', 604800000)
>>> parse_target("no activity within 30 days").kind
'inactive'
>>> parse_target('"Order Completed" in 2+ distinct category within 72 hours').min_distinct
2
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from segflow.clock import DAY_MS, HOUR_MS, MINUTE_MS
from segflow.ml.exceptions import MLInputError
from segflow.ml.transactions import quote

UNITS_MS = {"minute": MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS, "week": 7 * DAY_MS}
_WINDOW = r"within\s+(?P<n>\d+)\s+(?P<unit>minute|hour|day|week)s?"
_PERFORMS = re.compile(rf'^performs\s+"(?P<event>[^"]+)"\s+{_WINDOW}$', re.I)
_INACTIVE = re.compile(rf"^no\s+activity\s+{_WINDOW}$", re.I)
_DISTINCT = re.compile(
    rf'^"(?P<event>[^"]+)"\s+in\s+(?P<min>\d+)\+\s+distinct\s+(?P<prop>[A-Za-z_][\w.]*)\s+{_WINDOW}$',
    re.I,
)


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """What a propensity model predicts, for each profile and cutoff T, over ``(T, T + within_ms]``."""

    kind: Literal["performs", "inactive", "distinct"]
    within_ms: int
    event: str | None = None
    property: str | None = None
    min_distinct: int = 2
    text: str = ""


def parse_target(text: str) -> Target:
    """Parse a target written in the segment language's terms."""
    source = " ".join(text.split())
    for pattern, kind in (
        (_PERFORMS, "performs"),
        (_INACTIVE, "inactive"),
        (_DISTINCT, "distinct"),
    ):
        m = pattern.match(source)
        if m is None:
            continue
        within = int(m["n"]) * UNITS_MS[m["unit"].lower()]
        if within <= 0:
            raise MLInputError("target", "the window must be positive")
        groups = m.groupdict()
        return Target(
            kind=kind,  # type: ignore[arg-type]
            within_ms=within,
            event=groups.get("event"),
            property=groups.get("prop"),
            min_distinct=int(groups["min"]) if groups.get("min") else 2,
            text=source,
        )
    raise MLInputError(
        "target",
        f"cannot read {text!r}; write 'performs \"E\" within N days', 'no activity within N days' "
        "or '\"E\" in N+ distinct PROPERTY within N hours'",
    )


def labels_sql(
    target: Target, events_table: str = "profile_events", cutoffs_table: str = "ml_cutoffs"
) -> str:
    """SQL of ``(profile_id, cutoff_ms, label)`` for every row of ``cutoffs_table(profile_id, cutoff_ms)``.

    Only events in ``(cutoff_ms, cutoff_ms + within_ms]`` are read: the label never sees the
    features' past, and the features (computed at ``cutoff_ms``) never see the label's window.
    """
    ev, cut = quote(events_table), quote(cutoffs_table)
    window = (
        f"e.timestamp_ms > c.cutoff_ms AND e.timestamp_ms <= c.cutoff_ms + {int(target.within_ms)}"
    )
    if target.kind == "inactive":
        hit = "count(e.profile_id) = 0"
        cond = ""
    elif target.kind == "performs":
        hit = "count(e.profile_id) > 0"
        cond = "AND e.event = $event"
    else:
        path = "$." + (target.property or "category")
        hit = f"count(DISTINCT json_extract_string(e.properties, '{path}')) >= {int(target.min_distinct)}"
        cond = "AND e.event = $event"
    return f"""
        SELECT c.profile_id, c.cutoff_ms, CASE WHEN {hit} THEN 1 ELSE 0 END AS label
        FROM {cut} c LEFT JOIN {ev} e ON e.profile_id = c.profile_id AND {window} {cond}
        GROUP BY c.profile_id, c.cutoff_ms
    """


def label_params(target: Target) -> dict[str, str]:
    """Bind values for :func:`labels_sql`."""
    return {"event": target.event} if target.kind != "inactive" and target.event else {}
