"""The value semantics both back ends share: typed comparisons, JSON paths, text and numbers.

A comparison is true only when the value has the literal's type (text, number, boolean) and
the comparison holds; a missing or null value makes every comparison false.

>>> compare(12, ">", 10), compare("12", ">", 10), compare(None, "!=", "x")
(True, False, False)
>>> to_text(True), to_text(3), to_text(1.5)
('true', '3', None)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from segflow.rules import ast
from segflow.spec.events import Event

MISSING = object()


def get_path(data: Any, path: ast.Path) -> Any:
    """The value at ``path`` in nested dicts, or :data:`MISSING`."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return MISSING
        data = data[key]
    return data


def to_num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def to_text(value: Any) -> str | None:
    """Text form used by unique/most frequent/first/last: strings, integers and booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def to_time_ms(value: Any) -> float | None:
    """A trait holding a time: epoch milliseconds, or ISO 8601 text (UTC unless it says)."""
    num = to_num(value)
    if num is not None:
        return num
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return float(int(parsed.timestamp() * 1000))


def _ordered(a: Any, op: str, b: Any) -> bool:
    if op == "=":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    return False


def compare(value: Any, op: str, literal: ast.Scalar | tuple[ast.Scalar, ...]) -> bool:
    """Typed comparison of a (JSON) value with a literal."""
    if isinstance(literal, tuple):
        return any(compare(value, "=", item) for item in literal)
    if isinstance(value, list):
        return op == "contains" and any(compare(v, "=", literal) for v in value)
    if isinstance(literal, bool):
        return isinstance(value, bool) and op in ("=", "!=") and _ordered(value, op, literal)
    if isinstance(literal, int | float):
        num = to_num(value)
        return num is not None and _ordered(num, op, float(literal))
    if not isinstance(value, str):
        return False
    if op == "contains":
        return literal in value
    if op == "starts with":
        return value.startswith(literal)
    return _ordered(value, op, literal)


def exists(value: Any) -> bool:
    return value is not MISSING and value is not None


def filter_matches(flt: ast.Filter, props: dict[str, Any]) -> bool:
    if isinstance(flt, ast.FCompare):
        value = get_path(props, flt.path)
        return value is not MISSING and compare(value, flt.op, flt.value)
    if isinstance(flt, ast.FExists):
        return exists(get_path(props, flt.path))
    if isinstance(flt, ast.FAnd):
        return all(filter_matches(f, props) for f in flt.items)
    if isinstance(flt, ast.FOr):
        return any(filter_matches(f, props) for f in flt.items)
    return not filter_matches(flt.item, props)


def selector_matches(sel: ast.Selector, event: Event) -> bool:
    """Whether ``event`` is one of the events ``sel`` names (filters read ``properties``)."""
    kind = sel.kind
    if kind == "track":
        ok = event.type == "track" and event.event == sel.name
    elif kind in ("page", "screen"):
        ok = event.type == kind and (sel.name is None or event.name == sel.name)
    elif kind == "identify":
        ok = event.type == "identify"
    elif kind == "identified":
        ok = event.user_id is not None
    elif kind == "trait":
        ok = event.type == "identify" and get_path(event.traits, sel.trait or ()) is not MISSING
    else:
        ok = True
    return ok and (sel.filter is None or filter_matches(sel.filter, event.properties))


def index_key(sel: ast.Selector) -> str | None:
    """The event-name index key of a selector: the track name, or None (matches by type)."""
    return sel.name if sel.kind == "track" else None
