"""Render rule trees back to rule text (for explanations and canonical display).

>>> from segflow.rules.parser import parse
>>> render(parse('did "A" where x = 1 at least 2 times in last 1 hour').condition)
'count("A" where x = 1 in last 1 hour) >= 2'
"""

from __future__ import annotations

import json

from segflow.rules import ast

_UNITS = (
    (7 * 86_400_000, "week"),
    (86_400_000, "day"),
    (3_600_000, "hour"),
    (60_000, "minute"),
    (1_000, "second"),
    (1, "millisecond"),
)


def duration(ms: int) -> str:
    """``90 minutes`` style text for a duration.

    >>> duration(3_600_000), duration(90 * 60_000)
    ('1 hour', '90 minutes')
    """
    for size, unit in _UNITS:
        if ms % size == 0 and ms >= size:
            n = ms // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "0 milliseconds"


def literal(v: ast.Scalar | tuple[ast.Scalar, ...]) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(literal(i) for i in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False) if isinstance(v, str) else repr(v)


def path(p: ast.Path) -> str:
    return ".".join(k if k.replace("_", "a").isalnum() else json.dumps(k) for k in p)


def window(w: ast.Window) -> str:
    if w.far_ms is None:
        return "" if w.near_ms == 0 else f" before {duration(w.near_ms)} ago"
    if w.near_ms == 0:
        return f" in last {duration(w.far_ms)}"
    size, unit = next((sz, u) for sz, u in _UNITS if w.far_ms % sz == 0 and w.near_ms % sz == 0)
    return f" between {w.far_ms // size} and {w.near_ms // size} {unit}s ago"


def filt(f: ast.Filter) -> str:
    if isinstance(f, ast.FCompare):
        return f"{path(f.path)} {f.op} {literal(f.value)}"
    if isinstance(f, ast.FExists):
        return f"{path(f.path)} exists"
    if isinstance(f, ast.FNot):
        return f"not {filt(f.item)}"
    joiner = " and " if isinstance(f, ast.FAnd) else " or "
    return "(" + joiner.join(filt(i) for i in f.items) + ")"


def selector(s: ast.Selector) -> str:
    base = {"track": json.dumps(s.name), "any": "any event", "identify": "identify"}.get(
        s.kind, s.kind
    )
    if s.kind in ("page", "screen") and s.name is not None:
        base += f" {json.dumps(s.name)}"
    return base + (f" where {filt(s.filter)}" if s.filter is not None else "")


def value(v: ast.Value) -> str:
    if isinstance(v, ast.Aggregate):
        of = f"{path(v.path)} of " if v.path else ""
        return f"{v.func}({of}{selector(v.selector)}{window(v.window)})"
    if isinstance(v, ast.TraitRef):
        return f"trait {path(v.path)}"
    if isinstance(v, ast.ComputedRef):
        return f"computed {v.name}"
    if isinstance(v, ast.ScoreRef):
        return f"score {v.model}"
    if isinstance(v, ast.ClusterRef):
        return f"cluster {'id ' if v.by_id else ''}of model {v.model}"
    return "first seen"


def rank(ref: ast.ScoreRef, op: str, right: ast.Scalar | tuple[ast.Scalar, ...]) -> str:
    """``score M in top P%`` for the comparison the parser lowers it to.

    >>> rank(ast.ScoreRef("churn", "top"), "<=", 0.07)
    'score churn in top 7%'
    """
    side = ref.rank
    if op == "<=" and isinstance(right, int | float) and not isinstance(right, bool):
        return f"score {ref.model} in {side} {round(right * 100, 9):.12g}%"
    return f"score {ref.model} (share {ref.rank}) {op} {literal(right)}"


def render(c: ast.Condition) -> str:
    """Rule text equivalent to ``c`` (not necessarily as the author wrote it)."""
    if isinstance(c, ast.And | ast.Or):
        joiner = " and " if isinstance(c, ast.And) else " or "
        return "(" + joiner.join(render(i) for i in c.items) + ")"
    if isinstance(c, ast.Not):
        return f"not {render(c.item)}"
    if isinstance(c, ast.Const):
        return "true" if c.value else "false"
    if isinstance(c, ast.Compare):
        if isinstance(c.left, ast.ScoreRef) and c.left.rank is not None:
            return rank(c.left, c.op, c.right)
        return f"{value(c.left)} {c.op} {literal(c.right)}"
    if isinstance(c, ast.Exists):
        return f"{value(c.value)} exists"
    if isinstance(c, ast.TimeIn):
        w = window(c.window).strip() or "ever"
        return f"{value(c.value)} {w}"
    if isinstance(c, ast.InSegment):
        return f"in segment {json.dumps(c.name)}"
    if isinstance(c, ast.Anonymous):
        return "is anonymous"
    if isinstance(c, ast.Periodic):
        return f"did {selector(c.selector)} in at least {c.min_buckets} of last {c.buckets} {duration(c.period_ms).split(' ', 1)[1].rstrip('s')}s"
    steps = [
        selector(s.selector) + (f" within {duration(s.within_ms)}" if s.within_ms else "")
        for s in c.steps
    ]
    text = "did " + " then ".join(steps)
    if c.absent is not None:
        within = f" within {duration(c.absent.within_ms)}" if c.absent.within_ms else ""
        text += f" then not {selector(c.absent.selector)}{within}"
    return text
