"""Template filters: times, numbers and JSON as people read them.

>>> when(0)
'1970-01-01 00:00:00'
>>> number(1234567)
'1,234,567'
>>> ago(1_000, now=61_000)
'1 min ago'
>>> [duration(x) for x in (12.0, 999.4, 27261.0, 150_000, 7_200_000, None)]
['12 ms', '999 ms', '27.3 s', '2.5 min', '2.0 h', '-']
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from segflow.spec.normalize import iso_ms
from segflow.ui.highlight import rule_html


def when(ms: int | None) -> str:
    """Epoch ms as UTC ``YYYY-MM-DD HH:MM:SS`` (``-`` for none)."""
    if ms is None:
        return "-"
    return iso_ms(ms)[:19].replace("T", " ")


def ago(ms: int | None, now: int | None = None) -> str:
    """How long before ``now`` (default: the wall clock) ``ms`` was."""
    if ms is None:
        return "never"
    seconds = max(0, ((now if now is not None else time.time_ns() // 1_000_000) - ms) // 1000)
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def duration(ms: float | None) -> str:
    """Milliseconds in the unit people read them in (``27.3 s``, not ``27261.0 ms``)."""
    if ms is None:
        return "-"
    for size, unit in ((3_600_000, "h"), (60_000, "min"), (1_000, "s")):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms:.0f} ms"


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def pretty(value: Any) -> str:
    """Compact JSON for a value (traits, properties)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def value(item: Any) -> str:
    """Text as it is, anything else as compact JSON."""
    return item if isinstance(item, str) else pretty(item)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def rule(text: str) -> Markup:
    """A segment rule, syntax-highlighted."""
    return rule_html(text)


FILTERS: dict[str, Callable[..., str]] = {
    "rule": rule,
    "when": when,
    "ago": ago,
    "duration": duration,
    "number": number,
    "pretty": pretty,
    "value": value,
    "percent": percent,
}
