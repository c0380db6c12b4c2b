"""The invariant: for any history and any T, incremental members == SQL members (DuckDB here;
test_engines.py runs the same on PostgreSQL, ClickHouse and Spark).

The incremental side is the Python program and, in each test's ``kernel`` variant, the compiled
kernel (fewer generated examples: tests/unit/rules/test_kernel.py holds the two equal call by
call over many more)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.engines import Backend, DuckDBBackend

from segflow.ml.ranks import with_ranks
from segflow.rules import StaticProfile, ast, compile_segments, parse, parse_trait
from segflow.rules.incremental import kernel
from segflow.rules.render import render
from segflow.rules.sql.compiler import (
    compile_members,
    compile_members_grid,
    compile_traits,
    members_at_instant,
    members_expression,
)
from segflow.rules.values import get_path, to_time_ms
from segflow.spec.events import Event

DOC = Path(__file__).resolve().parents[3] / "docs" / "segments.md"


def doc_blocks(kind: str) -> dict[str, str]:
    """The ```rule NAME / ```trait NAME blocks of docs/segments.md."""
    text = DOC.read_text()
    return {m[1]: m[2].strip() for m in re.finditer(rf"```{kind} (\S+)\n(.*?)```", text, re.S)}


@dataclass(frozen=True)
class Arrival:
    """An event for ``profile_id`` that reaches the processor at ``arrived_ms``."""

    profile_id: str
    event: Event
    arrived_ms: int


@dataclass
class _Profile:
    view: StaticProfile
    state: bytes | None = None
    members: frozenset[str] = frozenset()
    traits: Mapping[str, Any] = field(default_factory=dict)
    wake: int | None = None


class Differential:
    """Feeds one history to the incremental evaluator (as the processor would) and to a SQL
    engine (``db``: a DuckDB connection or a ``tests.support.engines`` backend)."""

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection | Backend,
        segments: Mapping[str, str],
        traits: Mapping[str, str],
        scores: Mapping[str, dict[str, float]],
        clusters: Mapping[str, dict[str, str]],
        evaluator: str = "python",
    ) -> None:
        self.db: Backend = (
            DuckDBBackend.wrap(db) if isinstance(db, duckdb.DuckDBPyConnection) else db
        )
        self.segments, self.traits = dict(segments), dict(traits)
        program = compile_segments(segments, traits)
        self.program: Any = kernel.KernelProgram(program) if evaluator == "kernel" else program
        self.scores, self.clusters = scores, clusters
        self.profiles: dict[str, _Profile] = {}
        self._sql: dict[str, str] = {}
        rows = [(pid, m, s) for pid, by_model in scores.items() for m, s in by_model.items()]
        if rows:
            self.db.insert("profile_scores", rows)
        labels = [(pid, m, c) for pid, by_model in clusters.items() for m, c in by_model.items()]
        if labels:
            self.db.insert("profile_clusters", labels)

    def _fire_timers(self, until_ms: int) -> None:
        while True:
            due = [p for p in self.profiles.values() if p.wake is not None and p.wake <= until_ms]
            if not due:
                return
            prof = min(due, key=lambda p: p.wake or 0)
            assert prof.wake is not None
            self._apply(prof, self.program.on_time(prof.view, prof.state, prof.wake))

    def _apply(self, prof: _Profile, res: Any) -> None:
        prof.state, prof.members, prof.traits, prof.wake = (
            res.state,
            res.members,
            res.computed_traits,
            res.next_wakeup_ms,
        )

    def feed(self, arrival: Arrival) -> None:
        self._fire_timers(arrival.arrived_ms)
        pid = arrival.profile_id
        if pid not in self.profiles:
            view = StaticProfile(
                pid, scores=self.scores.get(pid, {}), clusters=self.clusters.get(pid, {})
            )
            self.profiles[pid] = _Profile(view)
        prof = self.profiles[pid]
        self._apply(
            prof, self.program.on_event(prof.view, prof.state, arrival.event, arrival.arrived_ms)
        )
        e = arrival.event
        self.db.insert(
            "profile_events",
            [
                [
                    pid,
                    e.message_id,
                    e.source_id,
                    e.type,
                    e.event,
                    e.name,
                    e.timestamp_ms,
                    e.user_id,
                    e.anonymous_id,
                    json.dumps(e.properties),
                    json.dumps(e.traits),
                    json.dumps(e.context),
                ]
            ],
        )

    def incremental_members(self, at_ms: int) -> dict[str, set[str]]:
        self._fire_timers(at_ms)
        out: dict[str, set[str]] = {name: set() for name in self.segments}
        for pid, prof in self.profiles.items():
            for name in prof.members:
                out[name].add(pid)
        return out

    def sql_members(self, at_ms: int, *, literal: bool = False) -> dict[str, set[str]]:
        """Members by SQL: the ``$at_ms`` query compiled once per segment (``literal``: the
        query compiled with ``at_ms`` written in, as a one-off preview does)."""
        out = {}
        for name, text in self.segments.items():
            if literal:
                sql = compile_members(
                    text,
                    segments=self.segments,
                    traits=self.traits,
                    at_ms=at_ms,
                    dialect=self.db.dialect,
                )
                rows = self.db.query(sql)
            else:
                if name not in self._sql:
                    self._sql[name] = compile_members(
                        text, segments=self.segments, traits=self.traits, dialect=self.db.dialect
                    )
                rows = self.db.query(self._sql[name], {"at_ms": at_ms})
            out[name] = {row[0] for row in rows}
        return out

    def incremental_traits(self, at_ms: int) -> dict[str, dict[str, Any]]:
        self._fire_timers(at_ms)
        return {pid: dict(p.traits) for pid, p in self.profiles.items()}

    def sql_traits(self, at_ms: int) -> dict[str, dict[str, Any]]:
        if not self.traits:
            return {pid: {} for pid in self.profiles}
        rows = self.db.query(compile_traits(self.traits, at_ms=at_ms, dialect=self.db.dialect))
        cols = list(self.traits)
        return {row[0]: dict(zip(cols, row[1:], strict=True)) for row in rows}


MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
BASE = 1_700_006_400_000  # a midnight, UTC
NAMES = [
    "Product Viewed",
    "Product Added",
    "Order Completed",
    "Feature Used",
    "Email Clicked",
    "Trial Started",
    "Products Searched",
    "Workout Logged",
]
TEXTS = ["shoes", "hats", "bags", "X", "Y", "marketing", "running shoes", "s1", "s2", "Shoes", ""]
scalars = st.one_of(
    st.sampled_from(TEXTS),
    st.integers(-2, 300),
    st.integers(-8, 1600).map(lambda n: n / 4),
    st.booleans(),
    st.none(),
)
properties = st.dictionaries(
    st.sampled_from(
        ["category", "revenue", "feature", "list", "query", "session_id", "price", "product"]
    ),
    scalars | st.fixed_dictionaries({"category": scalars}),
    max_size=4,
)
times = st.one_of(
    st.integers(0, 3).map(lambda d: BASE + d * DAY),
    st.integers(-10, 10).map(lambda d: BASE + d * DAY),
    st.sampled_from(["2023-01-01T00:00:00Z", "2023-11-10T12:00:00+01:00", "not a date"]),
)
trait_values = st.dictionaries(
    st.sampled_from(["plan", "email", "created_at"]),
    st.one_of(st.sampled_from(["pro", "free", "a@b.c"]), st.integers(0, 5), st.none(), times),
    max_size=3,
)


REALISTIC = {
    "Product Viewed": st.fixed_dictionaries(
        {"category": st.sampled_from(["shoes", "shoes", "hats", "bags", 7])}
    ),
    "Product Added": st.fixed_dictionaries({"category": st.sampled_from(["shoes", "hats"])}),
    "Order Completed": st.fixed_dictionaries(
        {"revenue": st.integers(0, 1200).map(lambda n: n / 4)}
    ),
    "Feature Used": st.fixed_dictionaries({"feature": st.sampled_from(["X", "Y", "X"])}),
    "Email Clicked": st.fixed_dictionaries({"list": st.sampled_from(["marketing", "news"])}),
    "Products Searched": st.fixed_dictionaries(
        {"query": st.sampled_from(["running shoes", "hats"])}
    ),
}
realistic_traits = st.fixed_dictionaries(
    {"plan": st.sampled_from(["pro", "free"]), "email": st.just("a@b.c")},
    optional={"created_at": times},
)


def _props(draw: Any, name: str) -> dict[str, Any]:
    if name in REALISTIC and draw(st.booleans()):
        props: dict[str, Any] = draw(REALISTIC[name])
        if draw(st.booleans()):
            props["session_id"] = draw(st.sampled_from([f"s{i}" for i in range(12)]))
        return props
    return dict(draw(properties))


@st.composite
def histories(draw: Any, max_events: int = 40) -> list[Arrival]:
    n = draw(st.integers(1, max_events))
    spread = draw(st.sampled_from([2, 12, 35, 95]))
    focus = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    arrivals = []
    for i in range(n):
        day = draw(st.integers(0, spread))
        minute = draw(st.integers(0, 24)) * 5 + draw(st.sampled_from([0, 0, 0, 1]))
        ts = BASE + day * DAY + 600 * MIN + minute * MIN
        delay = draw(st.sampled_from([0, 0, 0, 1]))
        delay_ms = 0 if delay == 0 else draw(st.integers(-120, 60)) * MIN
        kind = draw(st.sampled_from(["track"] * 6 + ["page", "identify", "screen"]))
        pid = draw(st.sampled_from(["p1", "p2", "p2", "p3"]))
        user_id = draw(st.sampled_from([None, None, f"u-{pid}"]))
        common: dict[str, Any] = dict(
            message_id=f"m{i:03d}",
            source_id="web",
            timestamp_ms=ts,
            received_at_ms=ts,
            user_id=user_id,
            anonymous_id=f"a-{pid}",
        )
        if kind == "track":
            name = draw(st.sampled_from(focus if draw(st.integers(0, 4)) else NAMES))
            event = Event(type="track", event=name, properties=_props(draw, name), **common)
        elif kind in ("page", "screen"):
            event = Event(
                type=kind,
                name=draw(st.sampled_from(["Home", "Shoes"])),
                properties=draw(properties),
                **common,
            )
        else:
            traits = draw(st.one_of(trait_values, realistic_traits))
            event = Event(type="identify", traits=traits, **common)
        arrivals.append(Arrival(pid, event, max(BASE, ts + delay_ms)))
    arrivals.sort(key=lambda a: a.arrived_ms)
    return arrivals


def ranked(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``scores`` plus each profile's rank shares (``churn:top``, ``churn:bottom``), computed
    over the profiles that have a score, as a scoring run stores them (segflow.ml.ranks)."""
    out = {p: dict(by_model) for p, by_model in scores.items()}
    for model in sorted({m for by_model in scores.values() for m in by_model}):
        pids = sorted(p for p, by_model in scores.items() if model in by_model)
        values = np.array([scores[p][model] for p in pids], dtype=np.float64)
        for key, shares in list(with_ranks(model, values))[1:]:
            for p, share in zip(pids, shares.tolist(), strict=True):
                out[p][key] = share
    return out


# scores of one scoring run: ties are common (0.1 twice), so "in top P%" meets them
models = st.fixed_dictionaries(
    {
        p: st.dictionaries(st.just("churn"), st.sampled_from([0.1, 0.3, 0.7, 0.9]), max_size=1)
        for p in ["p1", "p2", "p3"]
    }
).map(ranked)
clusters = st.fixed_dictionaries(
    {
        p: st.dictionaries(
            st.just("customer_segments"), st.sampled_from(["High spenders", "Other"]), max_size=1
        )
        for p in ["p1", "p2", "p3"]
    }
)
checkpoints = st.lists(st.integers(0, 130 * DAY), min_size=1, max_size=3)


def boundary_families(
    arrivals: Sequence[Arrival], segments: Mapping[str, str], traits: Mapping[str, str]
) -> list[list[int]]:
    """Times T where an off-by-one in ``<`` vs ``<=`` would show: ``anchor + D - 1``,
    ``anchor + D`` and ``anchor + D + 1`` for every distance D a rule measures from an anchor to
    T — window edges from event times, trait time windows from the traits' times, period edges,
    a negated step's ``within`` — grouped by kind so that each kind can be drawn from."""
    events = sorted({a.event.timestamp_ms for a in arrivals})
    firsts: dict[str, int] = {}  # first event time per identifier: the candidate first seens
    for a in arrivals:
        for key in (a.profile_id, a.event.anonymous_id, a.event.user_id):
            if key:
                firsts[key] = min(firsts.get(key, a.event.timestamp_ms), a.event.timestamp_ms)
    found: dict[str, set[int]] = {}

    def add(kind: str, anchors: Iterable[int], offsets: Iterable[int | None]) -> None:
        times = found.setdefault(kind, set())
        for o in offsets:
            if o is not None:
                times.update(a + o + d for a in anchors for d in (-1, 0, 1))

    def trait_times(path: ast.Path) -> set[int]:
        out = set()
        for a in arrivals:
            t = to_time_ms(get_path(a.event.traits, path)) if a.event.type == "identify" else None
            if t is not None and t == int(t):
                out.add(int(t))
        return out

    todo: list[Any] = [parse(t).condition for t in segments.values()]
    todo += [parse_trait(t).value for t in traits.values()]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.TimeIn):
            w = node.window
            if isinstance(node.value, ast.TraitRef):
                add("trait time", trait_times(node.value.path), (w.far_ms, w.near_ms))
            else:
                add("first seen", firsts.values(), (w.far_ms, w.near_ms))
            continue
        if isinstance(node, ast.Aggregate):
            add("window", events, (node.window.far_ms, node.window.near_ms))
        elif isinstance(node, ast.Periodic):
            add("period", events, [k * node.period_ms for k in range(node.buckets + 1)])
        elif isinstance(node, ast.Sequence):
            add("sequence", events, (0, node.absent.within_ms if node.absent else None))
        if is_dataclass(node):
            todo.extend(getattr(node, f.name) for f in fields(node))
        elif isinstance(node, tuple):
            todo.extend(node)
    return [sorted(times) for _, times in sorted(found.items()) if times]


def draw_boundaries(
    data: st.DataObject,
    arrivals: Sequence[Arrival],
    segments: Mapping[str, str],
    traits: Mapping[str, str],
    per_kind: int,
) -> set[int]:
    """Up to ``per_kind`` boundary times of each kind (see :func:`boundary_families`)."""
    out: set[int] = set()
    for times in boundary_families(arrivals, segments, traits):
        out.update(data.draw(st.lists(st.sampled_from(times), max_size=per_kind)))
    return out


def _assert_agree(
    diff: Differential,
    arrivals: list[Arrival],
    offsets: list[int],
    edges: Iterable[int] = (),
    *,
    literal: bool = True,
) -> None:
    times = sorted({BASE + o for o in offsets} | {arrivals[-1].arrived_ms} | set(edges))
    pending = list(arrivals)
    for at_ms in times:
        while pending and pending[0].arrived_ms <= at_ms:
            diff.feed(pending.pop(0))
        if not diff.profiles:
            continue
        inc, sql = diff.incremental_members(at_ms), diff.sql_members(at_ms)
        for name in diff.segments:
            assert inc[name] == sql[name], (name, diff.segments[name], at_ms - BASE)
        assert diff.incremental_traits(at_ms) == diff.sql_traits(at_ms), at_ms - BASE
    if literal:  # the query with T written in (a one-off preview) gives the same members
        assert diff.sql_members(times[-1], literal=True) == sql


DOC_SEGMENTS = doc_blocks("rule")
DOC_TRAITS = doc_blocks("trait")
EVALUATORS = [
    "python",
    pytest.param(
        "kernel",
        marks=pytest.mark.skipif(
            not kernel.AVAILABLE,
            reason="the compiled rule kernel is not built (or SEGFLOW_KERNEL=0)",
        ),
    ),
]


# the default suite runs a quick sample of each generated test; `make test-long` (CI runs it too)
# runs ten times as many examples
DEPTHS = ["quick", pytest.param("deep", marks=pytest.mark.long)]


def _examples(evaluator: str, python: int, depth: str = "quick") -> settings:
    """The generated tests' settings: the kernel variant runs a quarter of the examples, the
    deep (long) variant ten times as many."""
    python *= 10 if depth == "deep" else 1
    return settings(
        max_examples=python if evaluator == "python" else max(1, python // 4),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_documented_rules_agree(warehouse: Any, evaluator: str, depth: str) -> None:
    @_examples(evaluator, 12, depth)
    @given(histories(), models, clusters, checkpoints, st.data())
    def documented(
        arrivals: list[Arrival], scores: Any, labels: Any, offsets: list[int], data: st.DataObject
    ) -> None:
        diff = Differential(warehouse(), DOC_SEGMENTS, DOC_TRAITS, scores, labels, evaluator)
        # each checkpoint runs 17 queries: one boundary time of each kind
        edges = draw_boundaries(data, arrivals, DOC_SEGMENTS, DOC_TRAITS, per_kind=1)
        # compiling 17 rules with T written in costs ~1 s; the witness test below does that once
        _assert_agree(diff, arrivals, offsets, edges, literal=False)

    documented()


# --- generated rules ---------------------------------------------------------------------------

event_names = st.sampled_from(
    [f'"{n}"' for n in NAMES[:4]]
    + ["any event", 'page "Shoes"', "page", 'track "Product Added"']
    + ["screen", 'screen "Home"', "identify"]
)
filters = st.sampled_from(
    [
        'category = "shoes"',
        "revenue > 100",
        "revenue <= 50.5",
        'category in ["shoes", "hats"]',
        'category != "hats"',
        'query contains "shoe"',
        'category starts with "s"',
        "price exists",
        "feature = true",
        '(category = "shoes" or revenue >= 10)',
        'not category = "X"',
        'product.category = "shoes"',
        "revenue = 3",
        'category < "m"',
    ]
)
selectors = st.builds(
    lambda n, f: n + (f" where {f}" if f else ""), event_names, st.none() | filters
)
windows = st.sampled_from(
    [
        "",
        " in last 1 hour",
        " in last 2 days",
        " in last 30 days",
        " between 60 and 30 days ago",
        " between 3 and 1 hours ago",
        " before 7 days ago",
        " ever",
        " in last 90 minutes",
        " in last 90 seconds",
        " within the last 2 weeks",
        " in the last week",
        " between 3 and 1 weeks ago",
        " before 1 week ago",
        " between 600 and 30 seconds ago",
    ]
)
counts = st.sampled_from(["", " at least 2 times", " at most 1 times", " exactly 2 times"])
did = st.builds(
    lambda verb, s, c, w: f"{verb} {s}{c}{w}",
    st.sampled_from(["did", "did not", "has", "has done", "has not", "never", "never did"]),
    selectors,
    counts,
    windows,
)
num_agg = st.builds(
    lambda f, p, s, w, op, v: f"{f}({p} of {s}{w}) {op} {v}",
    st.sampled_from(["sum", "avg", "min", "max", "unique_count"]),
    st.sampled_from(["revenue", "price", "category", "product.category"]),
    selectors,
    windows,
    st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
    st.sampled_from(["0", "1", "2", "50", "100.5", "-1"]),
)
count_agg = st.builds(
    lambda s, w, op, v: f"count({s}{w}) {op} {v}",
    selectors,
    windows,
    st.sampled_from(["=", ">=", "<"]),
    st.integers(0, 3),
)
text_agg = st.builds(
    lambda f, p, s, w, op, v: f'{f}({p} of {s}{w}) {op} "{v}"',
    st.sampled_from(["most_frequent", "first", "last"]),
    st.sampled_from(["category", "revenue", "feature"]),
    selectors,
    windows,
    st.sampled_from(["=", "!=", ">", "contains", "starts with"]),
    st.sampled_from(["shoes", "hats", "s", "1"]),
)
list_agg = st.builds(
    lambda s, w: f'unique_list(category of {s}{w}) contains "shoes"', selectors, windows
)
exists_agg = st.builds(
    lambda f, s, w, t: f"{f}(revenue of {s}{w}) {t}",
    st.sampled_from(["avg", "min", "max", "first", "last", "most_frequent"]),
    selectors,
    windows,
    st.sampled_from(["exists", "does not exist"]),
)
misc = st.sampled_from(
    [
        'trait plan = "pro"',
        'trait plan != "free"',
        "trait email exists",
        "trait created_at before 30 days ago",
        "trait created_at in last 40 days",
        "trait created_at within the last 2 weeks",
        "trait created_at between 3 and 1 weeks ago",
        "trait plan = 3",
        'trait plan in [3, "pro"]',
        "trait plan does not exist",
        "is anonymous",
        "is identified",
        "is not anonymous",
        "true",
        "false",
        "first seen in last 2 days",
        "first seen in last 90 seconds",
        "first seen before 30 days ago",
        "score churn >= 0.7",
        "score churn does not exist",
        "score churn in top 34%",
        "score churn in top 50%",
        "score churn in top 100%",
        "score churn in bottom 40 percent",
        "score of model churn in bottom 67%",
        'cluster customer_segments = "High spenders"',
        "cluster of model customer_segments exists",
        "did any event on at least 2 of last 3 days",
        '"Product Viewed" in at least 2 of last 4 weeks',
        "screen on at least 2 of last 3 hours",
        "not did any event in last 14 days",
    ]
)
misc = misc.map(lambda t: "did " + t if t.startswith(('"', "screen")) else t)
withins = st.sampled_from(
    [
        "",
        "",
        " within 30 minutes",
        " within 1 hour",
        " within 600 minutes",
        " within 90 seconds",
        " within 2 days",
        " within 1 week",
    ]
)


@st.composite
def sequences(draw: Any) -> str:
    """``did A [then B [within W] [then C [within W2]]] [then not D [within W3]]``."""
    steps = [draw(selectors)]
    for _ in range(draw(st.integers(0, 2))):
        steps.append(draw(selectors) + draw(withins))
    text = "did " + " then ".join(steps)
    if len(steps) == 1 or draw(st.booleans()):
        text += f" then not {draw(selectors)}{draw(withins)}"
    return text


BASE_ATOMS = (did, num_agg, count_agg, text_agg, list_agg, exists_agg, misc, sequences())
# tests of a computed trait, by the type of its aggregate (ill-typed ones are refused)
COMPUTED_TESTS = {
    "number": [">= 1", "= 0", "< 50.5", "> 2", "!= 1", "exists", "does not exist"],
    "text": ['= "shoes"', '!= "hats"', 'starts with "s"', 'in ["1", "bags"]', "exists"],
    "list": ['contains "shoes"', 'contains "hats"', "exists", "does not exist"],
}
TRAIT_FUNCS = {"count": "number", "sum": "number", "avg": "number", "min": "number"}
TRAIT_FUNCS |= {"max": "number", "unique_count": "number", "unique_list": "list"}
TRAIT_FUNCS |= {"most_frequent": "text", "first": "text", "last": "text"}


def _rules(atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
            st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
            st.builds(lambda a: f"not ({a})", inner),
        ),
        max_leaves=3,
    )


rules = _rules(st.one_of(*BASE_ATOMS))
trait_sets = st.dictionaries(
    st.sampled_from(["t1", "t2"]),
    st.one_of(
        st.builds(lambda s, w: f"count({s}{w})", selectors, windows),
        st.builds(
            lambda f, p, s, w: f"{f}({p} of {s}{w})",
            st.sampled_from(sorted(TRAIT_FUNCS.keys() - {"count"})),
            st.sampled_from(["revenue", "category"]),
            selectors,
            windows,
        ),
    ),
    max_size=2,
)


@st.composite
def definitions(draw: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Segments g0..g2 (g2 refers to g0) and computed traits the segments may use."""
    traits = draw(trait_sets)
    computed = [
        st.builds(
            lambda test, name=name: f"computed {name} {test}",
            st.sampled_from(COMPUTED_TESTS[TRAIT_FUNCS[text.split("(", 1)[0]]]),
        )
        for name, text in sorted(traits.items())
    ]
    rule = _rules(st.one_of(*BASE_ATOMS, *computed)) if computed else rules
    a, b, c = draw(rule), draw(rule), draw(rule)
    ref = draw(st.sampled_from(["and", "or", "and not"]))
    return {"g0": a, "g1": b, "g2": f'({c}) {ref} in segment "g0"'}, traits


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_generated_rules_agree(warehouse: Any, evaluator: str, depth: str) -> None:
    @_examples(evaluator, 24, depth)
    @given(histories(), definitions(), models, clusters, checkpoints, st.data())
    def generated(
        arrivals: list[Arrival],
        defs: tuple[dict[str, str], dict[str, str]],
        scores: Any,
        labels: Any,
        offsets: list[int],
        data: st.DataObject,
    ) -> None:
        segments, traits = defs
        for text in segments.values():
            cond = parse(text).condition
            assert cond is not None and parse(render(cond)).condition == cond, text
        diff = Differential(warehouse(), segments, traits, scores, labels, evaluator)
        edges = draw_boundaries(data, arrivals, segments, traits, per_kind=3)
        _assert_agree(diff, arrivals, offsets, edges)

    generated()


# --- the time grid: one query for many instants == one query per instant ----------------------


def check_grid(
    db: Backend,
    arrivals: Sequence[Arrival],
    segments: Mapping[str, str],
    traits: Mapping[str, str],
    instants: Sequence[int],
    *,
    seen: bool,
) -> None:
    """Every segment's grid query (``compile_members_grid``) has, at each instant, exactly the
    rows of its per-instant query (``members_expression`` with T written in)."""
    for a in arrivals:
        db.insert("profile_events", [_event_row(a)])
    for name, text in segments.items():
        grid = compile_members_grid(
            text, instants, segments=segments, traits=traits, dialect=db.dialect, seen=seen
        )
        found: dict[int, set[str]] = {t: set() for t in instants}
        rows = db.query(grid)
        assert [(int(r[0]), r[1]) for r in rows] == sorted((int(r[0]), r[1]) for r in rows)
        for at_ms, pid in rows:
            found[int(at_ms)].add(pid)
        query = members_expression(
            text, segments=segments, traits=traits, dialect=db.dialect, seen=seen
        )
        for t in instants:
            one = {r[0] for r in db.query(members_at_instant(query, t, db.dialect))}
            assert found[t] == one, (name, text, seen, t - BASE)


def _event_row(a: Arrival) -> list[Any]:
    e = a.event
    return [
        a.profile_id, e.message_id, e.source_id, e.type, e.event, e.name, e.timestamp_ms,
        e.user_id, e.anonymous_id, json.dumps(e.properties), json.dumps(e.traits),
        json.dumps(e.context),
    ]  # fmt: skip


def _insert_models(db: Backend, scores: Any, labels: Any) -> None:
    rows = [(pid, m, s) for pid, by_model in scores.items() for m, s in by_model.items()]
    if rows:
        db.insert("profile_scores", rows)
    rows = [(pid, m, c) for pid, by_model in labels.items() for m, c in by_model.items()]
    if rows:
        db.insert("profile_clusters", rows)


def grid_check(make: Any, examples: int) -> Any:
    """The generated grid check: histories, rules (g0..g2, g2 ``in segment "g0"``, computed
    traits), scores and clusters, the documented rules, and instants at every kind of boundary
    — on fresh backends from ``make()``."""

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(histories(), definitions(), models, clusters, checkpoints, st.booleans(), st.data())
    def check(
        arrivals: list[Arrival],
        defs: tuple[dict[str, str], dict[str, str]],
        scores: Any,
        labels: Any,
        offsets: list[int],
        seen: bool,
        data: st.DataObject,
    ) -> None:
        segments, traits = defs
        if data.draw(st.integers(0, 3)) == 0:  # now and then the documented rules
            segments, traits = DOC_SEGMENTS, DOC_TRAITS
        edges = draw_boundaries(data, arrivals, segments, traits, per_kind=1)
        instants = sorted({BASE + o for o in offsets} | edges)
        db = make()
        _insert_models(db, scores, labels)
        check_grid(db, arrivals, segments, traits, instants, seen=seen)

    return check


@pytest.mark.parametrize("depth", DEPTHS)
def test_the_grid_query_gives_the_per_instant_members(warehouse: Any, depth: str) -> None:
    grid_check(lambda: DuckDBBackend.wrap(warehouse()), 60 if depth == "deep" else 5)()


def test_the_grid_answers_repeated_and_unsorted_instants(warehouse: Any) -> None:
    db = DuckDBBackend.wrap(warehouse())
    arrivals = [_ev("p1", 0, 90 * MIN, "A"), _ev("p2", 1, 30 * MIN, "A")]
    instants = [T0, T0 - HOUR, T0, T0 - 3 * HOUR]
    for a in arrivals:
        db.insert("profile_events", [_event_row(a)])
    rows = db.query(compile_members_grid('did "A" in last 1 hour', instants, seen=True))
    assert [(int(t) - T0, p) for t, p in rows] == [(-HOUR, "p1"), (0, "p2")]
    with pytest.raises(ValueError, match="at_ms"):
        compile_members_grid('did "A"', [])


def test_iso_helpers_match_duckdb(warehouse: Any) -> None:
    con = warehouse()
    text = "2023-11-10T12:00:00+01:00"
    (duck,) = con.execute("SELECT epoch_ms(TRY_CAST(? AS TIMESTAMPTZ))", [text]).fetchone()
    assert duck == int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


# --- every documented example has a member and a near miss, on both back ends -------------------

T0 = BASE + 100 * DAY


def _ev(
    pid: str,
    i: int,
    at: int,
    name: str = "Page",
    kind: str = "track",
    user: str | None = None,
    **props: Any,
) -> Arrival:
    fields: dict[str, Any] = dict(
        message_id=f"{pid}-{i}",
        source_id="web",
        timestamp_ms=T0 - at,
        received_at_ms=T0 - at,
        anonymous_id=f"anon-{pid}",
        user_id=user,
    )
    if kind == "identify":
        event = Event(type="identify", traits=props, **fields)
    elif kind == "page":
        event = Event(type="page", name=name, properties=props, **fields)
    else:
        event = Event(type="track", event=name, properties=props, **fields)
    return Arrival(pid, event, T0 - at)


def _story(pid: str, *events: tuple[Any, ...]) -> list[Arrival]:
    out = []
    for i, spec in enumerate(events):
        at, name, *rest = spec
        props = rest[0] if rest else {}
        out.append(_ev(pid, i, at, name, **props))
    return out


M, H = MIN, HOUR
WITNESSES: dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = {
    "viewed_3_in_hour": (
        [(50 * M, "Product Viewed"), (30 * M, "Product Viewed"), (M, "Product Viewed")],
        [(60 * M, "Product Viewed"), (30 * M, "Product Viewed"), (M, "Product Viewed")],
    ),
    "x_not_y": (
        [(DAY, "Feature Used", {"feature": "X"})],
        [(DAY, "Feature Used", {"feature": "X"}), (H, "Feature Used", {"feature": "Y"})],
    ),
    "emailed_no_trial": (
        [(2 * DAY, "Email Clicked", {"list": "marketing"})],
        [(2 * DAY, "Email Clicked", {"list": "marketing"}), (90 * DAY, "Trial Started")],
    ),
    "abandoned_cart": (
        [(2 * H, "Product Added")],
        [(2 * H, "Product Added"), (90 * M, "Order Completed")],
    ),
    "frequent_visitors": (
        [(k * DAY + H, "Home", {"kind": "page"}) for k in range(8)],
        [(k * H + H, "Home", {"kind": "page"}) for k in range(8)],
    ),
    "footwear_prospect": (
        [(2 * H, "Products Searched", {"query": "running shoes"})],
        [(2 * H, "Products Searched", {"query": "running shoes", "user": "u1"})],
    ),
    "big_spenders": (
        [
            (10 * DAY, "Order Completed", {"revenue": 250}),
            (20 * DAY, "Order Completed", {"revenue": 200.5}),
        ],
        [(k * DAY, "Order Completed", {"revenue": 100}) for k in range(1, 5)],
    ),
    "dormant": ([(15 * DAY, "Home", {"kind": "page"})], [(14 * DAY - 1, "Home", {"kind": "page"})]),
    "viewed_added_no_order": (
        [(3 * H, "Product Viewed"), (3 * H - 10 * M, "Product Added")],
        [(3 * H, "Product Viewed"), (2 * H, "Product Added")],
    ),
    "shoe_explorers": (
        [(DAY, "Product Viewed", {"category": c}) for c in ("shoes", "shoes", "hats", "bags")],
        [(DAY, "Product Viewed", {"category": c}) for c in ("shoes", "hats", "bags")],
    ),
    "pro_at_risk": (
        [
            (
                DAY,
                "identify",
                {
                    "kind": "identify",
                    "plan": "pro",
                    "email": "a@b.c",
                    "created_at": "2023-01-01T00:00:00Z",
                },
            )
        ],
        [
            (
                DAY,
                "identify",
                {"kind": "identify", "plan": "pro", "email": "a@b.c", "created_at": T0 - 3 * DAY},
            )
        ],
    ),
    "new_workout_users": (
        [(2 * DAY, "Workout Logged")],
        [(2 * DAY, "Workout Logged"), (10 * DAY, "Workout Logged")],
    ),
    "regular_workouts": (
        [(k * DAY, "Workout Logged") for k in (1, 8, 15)],
        [(k * DAY, "Workout Logged") for k in (1, 2, 3)],
    ),
    "stopped_workouts": (
        [(45 * DAY, "Workout Logged")],
        [(45 * DAY, "Workout Logged"), (5 * DAY, "Workout Logged")],
    ),
    "ordered_30_to_90_days_ago": ([(40 * DAY, "Order Completed")], [(10 * DAY, "Order Completed")]),
    "loyal_shoe_buyers": (
        [
            (DAY, "Order Completed"),
            (2 * DAY, "Order Completed"),
            (DAY, "Product Viewed", {"category": "shoes"}),
        ],
        [(DAY, "Order Completed"), (DAY, "Product Viewed", {"category": "shoes"})],
    ),
    "engaged_not_dormant": (
        [(k * DAY + H, "Home", {"kind": "page"}) for k in range(8)],
        [(15 * DAY, "Home", {"kind": "page"})],
    ),
}


def _normalise(spec: tuple[Any, ...]) -> tuple[Any, ...]:
    at, name, *rest = spec
    props = dict(rest[0]) if rest else {}
    extra = {k: props.pop(k) for k in ("kind", "user") if k in props}
    return (at, name, {**extra, **props})


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_every_documented_example_has_a_member_and_a_near_miss(
    warehouse: Any, evaluator: str
) -> None:
    check_documented_witnesses(warehouse, evaluator=evaluator)


def check_documented_witnesses(
    warehouse: Any, placeholders: bool = True, evaluator: str = "python"
) -> None:
    assert set(WITNESSES) == set(DOC_SEGMENTS)
    arrivals: list[Arrival] = []
    for name, (member, near_miss) in WITNESSES.items():
        arrivals += _story(f"{name}:w", *map(_normalise, member))
        arrivals += _story(f"{name}:n", *map(_normalise, near_miss))
    arrivals.sort(key=lambda a: a.arrived_ms)
    scores = {"pro_at_risk:w": {"churn": 0.8}, "pro_at_risk:n": {"churn": 0.8}}
    clusters = {p: {"customer_segments": "High spenders"} for p in scores}
    diff = Differential(warehouse(), DOC_SEGMENTS, DOC_TRAITS, scores, clusters, evaluator)
    for arrival in arrivals:
        diff.feed(arrival)
    inc, sql = diff.incremental_members(T0), diff.sql_members(T0, literal=True)
    if placeholders:  # the same query with T as a parameter
        assert diff.sql_members(T0) == sql
    for name in DOC_SEGMENTS:
        pair = {f"{name}:w", f"{name}:n"}
        assert inc[name] & pair == {f"{name}:w"}, (name, inc[name] & pair)
        assert sql[name] & pair == {f"{name}:w"}, (name, sql[name] & pair)
    assert diff.incremental_traits(T0) == diff.sql_traits(T0)


# --- every kind of edge, hit exactly: t + D - 1, t + D, t + D + 1 -------------------------------

EDGE_CASES: dict[str, list[tuple[int, str, dict[str, Any]]]] = {
    # rule: events as (time after T0, name or "identify", properties or traits)
    'did "A" in last 1 hour': [(0, "A", {})],
    'did "A" in last 90 seconds at least 2 times': [(0, "A", {}), (30_000, "A", {})],
    'did "A" between 3 and 1 hours ago': [(0, "A", {})],
    'did "A" before 1 week ago': [(0, "A", {})],
    'count("A" in the last 2 weeks) = 1': [(0, "A", {})],
    'sum(revenue of "A" between 600 and 30 seconds ago) > 1': [(0, "A", {"revenue": 2})],
    "trait created_at in last 40 days": [(0, "identify", {"created_at": T0 - 5 * DAY})],
    "trait created_at before 30 days ago": [(0, "identify", {"created_at": T0 - 5 * DAY})],
    "trait created_at between 3 and 1 weeks ago": [
        (0, "identify", {"created_at": "2023-11-10T12:00:00+01:00"})
    ],
    "first seen in last 2 days": [(0, "A", {}), (HOUR, "A", {})],
    'did "A" on at least 2 of last 3 days': [(0, "A", {}), (DAY + HOUR, "A", {})],
    'did "A" then not "B" within 1 hour': [(0, "A", {})],
    'did "A" then "B" then not "C" within 90 seconds': [(0, "A", {}), (MIN, "B", {})],
}
SPACED = {  # sequences: steps exactly ``within`` apart, and 1 ms more
    'did "A" then "B" within 30 minutes': [
        [(0, "A", {}), (30 * MIN + extra, "B", {})] for extra in (0, 1)
    ],
    'did "A" then "B" within 1 hour then "C" within 90 seconds': [
        [(0, "A", {}), (HOUR + extra, "B", {}), (HOUR + 90_000 + extra2, "C", {})]
        for extra in (0, 1)
        for extra2 in (0, 1)
    ],
}


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_every_kind_of_window_edge_agrees(warehouse: Any, evaluator: str) -> None:
    check_window_edges(warehouse, evaluator)


def check_window_edges(warehouse: Any, evaluator: str = "python") -> None:
    """Deterministic companion of the generated tests: each edge of each kind of window is
    checked at exactly ``anchor + D - 1``, ``anchor + D`` and ``anchor + D + 1``."""
    cases = {rule: [events] for rule, events in EDGE_CASES.items()} | SPACED
    for rule, histories_ in cases.items():
        arrivals = []
        for n, events in enumerate(histories_):
            for i, (at, name, data) in enumerate(events):
                kind = "identify" if name == "identify" else "track"
                fields_: dict[str, Any] = dict(
                    message_id=f"{n}-{i}",
                    source_id="web",
                    timestamp_ms=T0 + at,
                    received_at_ms=T0 + at,
                    anonymous_id=f"a{n}",
                )
                if kind == "identify":
                    event = Event(type="identify", traits=data, **fields_)
                else:
                    event = Event(type="track", event=name, properties=data, **fields_)
                arrivals.append(Arrival(f"p{n}", event, T0 + at))
        arrivals.sort(key=lambda a: a.arrived_ms)
        edges = set().union(*boundary_families(arrivals, {"s": rule}, {}))
        diff = Differential(warehouse(), {"s": rule}, {}, {}, {}, evaluator)
        _assert_agree(diff, arrivals, [], edges)
