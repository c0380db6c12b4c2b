"""Passes over parsed rules: type validation, computed-trait substitution, dependencies, cycles.

Each pass is a pure function; :data:`PASSES` is their order in :func:`analyze`.

>>> from segflow.rules.parser import parse
>>> [d.message for d in validate(parse('count("A") = "x"'))]
["count(...) is a number; compare it with a number, not 'x'"]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from segflow.rules import ast
from segflow.rules.exceptions import Diagnostic, RuleCycleError

NUMERIC_AGGS = frozenset({"count", "sum", "avg", "min", "max", "unique_count"})
TEXT_AGGS = frozenset({"first", "last", "most_frequent"})


def conditions(cond: ast.Condition) -> Iterator[ast.Condition]:
    """Every condition node under ``cond`` (pre-order)."""
    yield cond
    if isinstance(cond, ast.And | ast.Or):
        for item in cond.items:
            yield from conditions(item)
    elif isinstance(cond, ast.Not):
        yield from conditions(cond.item)


def values(cond: ast.Condition) -> Iterator[ast.Value]:
    for node in conditions(cond):
        if isinstance(node, ast.Compare | ast.Exists | ast.TimeIn):
            yield node.left if isinstance(node, ast.Compare) else node.value


def selectors(cond: ast.Condition) -> Iterator[ast.Selector]:
    """Every event selector a condition reads."""
    for node in conditions(cond):
        if isinstance(node, ast.Periodic):
            yield node.selector
        elif isinstance(node, ast.Sequence):
            yield from (s.selector for s in node.steps)
            if node.absent:
                yield node.absent.selector
    for value in values(cond):
        if isinstance(value, ast.Aggregate):
            yield value.selector


def segment_refs(cond: ast.Condition) -> set[str]:
    return {n.name for n in conditions(cond) if isinstance(n, ast.InSegment)}


def _diag(message: str) -> Diagnostic:
    return Diagnostic(line=1, column=1, message=message)


def _literal_types(right: ast.Scalar | tuple[ast.Scalar, ...]) -> set[str]:
    items = right if isinstance(right, tuple) else (right,)
    return {
        "bool" if isinstance(i, bool) else "text" if isinstance(i, str) else "number" for i in items
    }


def _check_compare(node: ast.Compare) -> Iterator[Diagnostic]:
    left, kinds = node.left, _literal_types(node.right)
    if isinstance(left, ast.Aggregate):
        label = f"{left.func}(...)"
        if left.func == "unique_list":
            if node.op != "contains":
                yield _diag(f"{label} is a list; test it with contains")
            return
        want = "number" if left.func in NUMERIC_AGGS else "text"
    elif isinstance(left, ast.ScoreRef):
        label, want = f"score {left.model}", "number"
    elif isinstance(left, ast.ClusterRef):
        label = f"cluster {'id ' if left.by_id else ''}of model {left.model}"
        want = "number" if left.by_id else "text"
    elif isinstance(left, ast.FirstSeen):
        yield _diag("first seen is a time; use a window: first seen in last 1 day")
        return
    else:
        return
    if kinds != {want}:
        yield _diag(f"{label} is a {want}; compare it with a {want}, not {node.right!r}")
    if want == "number" and node.op in ("contains", "starts with"):
        yield _diag(f"{label} is a number; {node.op} works on text")


def validate(rule: ast.Rule) -> list[Diagnostic]:
    """Type errors a parser cannot see (e.g. ``count(...) = "x"``)."""
    out: list[Diagnostic] = []
    if rule.condition is None:
        if not isinstance(rule.value, ast.Aggregate):
            out.append(_diag("a computed trait is an aggregate like count(...) or sum(x of ...)"))
        return out
    for node in conditions(rule.condition):
        if isinstance(node, ast.Compare):
            out.extend(_check_compare(node))
        elif isinstance(node, ast.TimeIn) and not isinstance(
            node.value, ast.TraitRef | ast.FirstSeen
        ):
            out.append(
                _diag("only a trait holding a date, or first seen, can be tested with a window")
            )
        elif isinstance(node, ast.Sequence):
            for step in node.steps[1:]:
                if step.within_ms is not None and step.within_ms <= 0:
                    out.append(_diag("a sequence's 'within' must be longer than 0"))
    return out


def unknown_events(rule: ast.Rule, known_events: Iterable[str]) -> list[Diagnostic]:
    """Warnings for track event names absent from the tracking plan / observed schema."""
    known = set(known_events)
    roots: list[ast.Selector] = []
    if rule.condition is not None:
        roots.extend(selectors(rule.condition))
    if isinstance(rule.value, ast.Aggregate):
        roots.append(rule.value.selector)
    names = sorted({s.name for s in roots if s.kind == "track" and s.name and s.name not in known})
    return [
        Diagnostic(
            line=1, column=1, severity="warning", message=f'no event named "{n}" has been seen'
        )
        for n in names
    ]


def score_models(rule: ast.Rule) -> set[str]:
    """The models whose scores (or ranks) a rule reads."""
    if rule.condition is None:
        return set()
    return {v.model for v in values(rule.condition) if isinstance(v, ast.ScoreRef)}


def _selects(op: str, x: float, lo: float, hi: float) -> str | None:
    """``"no"`` / ``"every"`` when ``score op x`` is the same for every score in [lo, hi]."""
    if op in (">=", ">"):
        return "no" if x > hi or (op == ">" and x == hi) else "every" if x < lo else None
    if op in ("<=", "<"):
        return "no" if x < lo or (op == "<" and x == lo) else "every" if x > hi else None
    if op == "=" and not lo <= x <= hi:
        return "no"
    return None


def score_ranges(rule: ast.Rule, ranges: Mapping[str, tuple[float, float]]) -> list[Diagnostic]:
    """Warnings for a ``score M op x`` whose threshold lies outside the latest run's scores
    (``ranges``: model -> (lowest, highest)), so it selects no scored profile, or every one.

    >>> from segflow.rules.parser import parse
    >>> [d.message for d in score_ranges(parse("score churn >= 0.7"), {"churn": (0.01, 0.69)})]
    ['score churn >= 0.7 selects no profile: the latest scoring run of churn scored from 0.01 to 0.69']
    """
    out: list[Diagnostic] = []
    if rule.condition is None:
        return out
    for node in conditions(rule.condition):
        if not (isinstance(node, ast.Compare) and isinstance(node.left, ast.ScoreRef)):
            continue
        ref, x = node.left, node.right
        if ref.rank is not None or ref.model not in ranges or isinstance(x, bool | str | tuple):
            continue
        lo, hi = ranges[ref.model]
        which = _selects(node.op, float(x), lo, hi)
        if which is not None:
            message = (
                f"score {ref.model} {node.op} {x:g} selects {which} profile"
                f"{' with a score' if which == 'every' else ''}: the latest scoring run of "
                f"{ref.model} scored from {lo:.4g} to {hi:.4g}"
            )
            out.append(Diagnostic(line=1, column=1, severity="warning", message=message))
    return out


def substitute_computed(cond: ast.Condition, traits: Mapping[str, ast.Aggregate]) -> ast.Condition:
    """Replace ``computed NAME`` by the trait's aggregate (raises KeyError for unknown names)."""
    if isinstance(cond, ast.And | ast.Or):
        return type(cond)(tuple(substitute_computed(i, traits) for i in cond.items))
    if isinstance(cond, ast.Not):
        return ast.Not(substitute_computed(cond.item, traits))
    if isinstance(cond, ast.Compare | ast.Exists) and isinstance(
        cond.left if isinstance(cond, ast.Compare) else cond.value, ast.ComputedRef
    ):
        ref = cond.left if isinstance(cond, ast.Compare) else cond.value
        assert isinstance(ref, ast.ComputedRef)
        agg = traits[ref.name]
        return replace(cond, left=agg) if isinstance(cond, ast.Compare) else ast.Exists(agg)
    return cond


def computed_refs(cond: ast.Condition) -> set[str]:
    return {v.name for v in values(cond) if isinstance(v, ast.ComputedRef)}


def topological_order(deps: Mapping[str, set[str]]) -> list[str]:
    """Names ordered so each comes after the segments it uses; raises RuleCycleError.

    >>> topological_order({"a": {"b"}, "b": set()})
    ['b', 'a']
    """
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise RuleCycleError([*trail[trail.index(name) :], name])
        state[name] = 1
        for dep in sorted(deps.get(name, set())):
            visit(dep, [*trail, name])
        state[name] = 2
        order.append(name)

    for name in sorted(deps):
        visit(name, [])
    return order


PASSES = (validate,)


def analyze(rule: ast.Rule) -> list[Diagnostic]:
    """Run every pass in :data:`PASSES` and collect their diagnostics."""
    return [d for p in PASSES for d in p(rule)]
