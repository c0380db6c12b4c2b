"""The compiled kernel against the Python evaluator, call by call: for generated histories and
rules (the differential test's strategies), after every event, timer, batch and merge, both
give the same members, computed traits and next timer — and each reads the other's state."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.rules.test_differential import (
    BASE,
    DAY,
    DOC_SEGMENTS,
    DOC_TRAITS,
    MIN,
    Arrival,
    clusters,
    definitions,
    histories,
    models,
)

from segflow.rules import StaticProfile, compile_segments, parser
from segflow.rules.ast import AggFunc
from segflow.rules.incremental import kernel
from segflow.rules.incremental.kernel import format as kernel_format
from segflow.rules.incremental.kernel.layout import Unsupported, build_layout
from segflow.rules.incremental.program import SegmentProgram
from segflow.rules.incremental.state import decode
from segflow.spec.events import Event

needs_kernel = pytest.mark.skipif(
    not kernel.AVAILABLE, reason="the compiled kernel is not built (or SEGFLOW_KERNEL=0)"
)


def typed(traits: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Computed traits with their types: 1 and 1.0 (or 0.0 and -0.0) are different answers."""
    return {name: (type(v).__name__, repr(v)) for name, v in traits.items()}


def same(py: Any, k: Any, where: object) -> None:
    assert k.members == py.members, where
    assert typed(k.computed_traits) == typed(py.computed_traits), where
    assert k.next_wakeup_ms == py.next_wakeup_ms, where


@dataclass
class _Both:
    view: StaticProfile
    py: bytes | None = None
    k: bytes | None = None
    wake: int | None = None
    last: Any = None


@dataclass
class SideBySide:
    """One history through the Python program and the kernel, as the processor runs them."""

    py: SegmentProgram
    k: Any
    scores: Mapping[str, dict[str, float]]
    labels: Mapping[str, dict[str, str]]
    swap: bool = False  # also hand each evaluator the other's state, and compare
    profiles: dict[str, _Both] = field(default_factory=dict)
    calls: int = 0

    def profile(self, pid: str) -> _Both:
        if pid not in self.profiles:
            view = StaticProfile(
                pid, scores=self.scores.get(pid, {}), clusters=self.labels.get(pid, {})
            )
            self.profiles[pid] = _Both(view)
        return self.profiles[pid]

    def apply(self, p: _Both, py: Any, k: Any, where: object) -> None:
        same(py, k, where)
        self.calls += 1
        if self.swap and self.calls % 3 == 0 and py.state and k.state:
            # each evaluator reads the other's state: the Python one the kernel's format, the
            # kernel the Python one's (converted), with the same answers at the same time
            at = py.next_wakeup_ms or 0
            same(self.py.on_time(p.view, k.state, at), self.k.on_time(p.view, py.state, at), where)
        p.py, p.k, p.wake, p.last = py.state, k.state, py.next_wakeup_ms, py

    def fire(self, until_ms: int) -> None:
        while True:
            due = [p for p in self.profiles.values() if p.wake is not None and p.wake <= until_ms]
            if not due:
                return
            p = min(due, key=lambda q: q.wake or 0)
            at = p.wake or 0
            self.apply(p, self.py.on_time(p.view, p.py, at), self.k.on_time(p.view, p.k, at), at)

    def feed(self, a: Arrival) -> None:
        self.fire(a.arrived_ms)
        p = self.profile(a.profile_id)
        py = self.py.on_event(p.view, p.py, a.event, a.arrived_ms)
        k = self.k.on_event(p.view, p.k, a.event, a.arrived_ms)
        self.apply(p, py, k, (a.event.message_id, a.arrived_ms - BASE))

    def feed_batch(self, batch: Sequence[Arrival]) -> None:
        """A micro-batch at its last arrival's time: the Python program event by event, the
        kernel (and the Python program's own ``on_events``) per profile in one call."""
        now = batch[-1].arrived_ms
        self.fire(now)
        by_profile: dict[str, list[Event]] = {}
        for a in batch:
            by_profile.setdefault(a.profile_id, []).append(a.event)
        for pid, events in by_profile.items():
            p = self.profile(pid)
            py = None
            state = p.py
            for e in events:
                py = self.py.on_event(p.view, state, e, now)
                state = py.state
            assert py is not None
            same(py, self.py.on_events(p.view, p.py, events, now), ("py batch", pid, now))
            self.apply(p, py, self.k.on_events(p.view, p.k, events, now), ("batch", pid, now))

    def merge(self, survivor: str, absorbed: str, now: int) -> None:
        a, b = self.profiles[survivor], self.profiles.pop(absorbed)
        assert self.k.can_merge(a.k, b.k) == self.py.can_merge(a.py, b.py)
        py_state = self.py.merge_states(a.py, b.py)
        k_state = self.k.merge_states(a.k, b.k)
        self.apply(
            a, self.py.on_time(a.view, py_state, now), self.k.on_time(a.view, k_state, now), "merge"
        )


def side_by_side(
    segments: Mapping[str, str],
    traits: Mapping[str, str],
    scores: Mapping[str, dict[str, float]] | None = None,
    labels: Mapping[str, dict[str, str]] | None = None,
    *,
    swap: bool = False,
) -> SideBySide:
    py = compile_segments(segments, traits)
    return SideBySide(py, kernel.KernelProgram(py), scores or {}, labels or {}, swap)


def run_history(both: SideBySide, arrivals: list[Arrival], offsets: list[int]) -> None:
    for a in arrivals:
        both.feed(a)
    for offset in sorted(offsets):
        both.fire(arrivals[-1].arrived_ms + offset)


SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
later = st.lists(st.integers(0, 130 * DAY), min_size=1, max_size=3)


@needs_kernel
@SETTINGS
@given(histories(), definitions(), models, clusters, later)
def test_generated_rules_give_the_same_answers_after_every_call(
    arrivals: list[Arrival],
    defs: tuple[dict[str, str], dict[str, str]],
    scores: Any,
    labels: Any,
    offsets: list[int],
) -> None:
    segments, traits = defs
    run_history(side_by_side(segments, traits, scores, labels, swap=True), arrivals, offsets)


@needs_kernel
@settings(SETTINGS, max_examples=40)
@given(histories(), models, clusters, later)
def test_documented_rules_give_the_same_answers_after_every_call(
    arrivals: list[Arrival], scores: Any, labels: Any, offsets: list[int]
) -> None:
    run_history(
        side_by_side(DOC_SEGMENTS, DOC_TRAITS, scores, labels, swap=True), arrivals, offsets
    )


@needs_kernel
@settings(SETTINGS, max_examples=60)
@given(histories(), definitions(), models, clusters, st.data())
def test_batches_give_what_their_events_give_one_by_one(
    arrivals: list[Arrival],
    defs: tuple[dict[str, str], dict[str, str]],
    scores: Any,
    labels: Any,
    data: st.DataObject,
) -> None:
    both = side_by_side(*defs, scores, labels)
    i = 0
    while i < len(arrivals):
        size = data.draw(st.integers(1, 8))
        both.feed_batch(arrivals[i : i + size])
        i += size
    both.fire(arrivals[-1].arrived_ms + 100 * DAY)


@needs_kernel
@settings(SETTINGS, max_examples=60)
@given(histories(), definitions(), st.data())
def test_merged_profiles_give_the_same_answers(
    arrivals: list[Arrival], defs: tuple[dict[str, str], dict[str, str]], data: st.DataObject
) -> None:
    both = side_by_side(*defs)
    cut = data.draw(st.integers(0, len(arrivals)))
    for a in arrivals[:cut]:
        both.feed(a)
    pids = sorted(both.profiles)
    if len(pids) >= 2:
        survivor, absorbed = data.draw(st.permutations(pids))[:2]
        now = arrivals[cut - 1].arrived_ms
        both.merge(survivor, absorbed, now)
        arrivals = [
            Arrival(survivor if a.profile_id == absorbed else a.profile_id, a.event, a.arrived_ms)
            for a in arrivals
        ]
    for a in arrivals[cut:]:
        both.feed(a)
    both.fire(arrivals[-1].arrived_ms + 100 * DAY)


@needs_kernel
@settings(SETTINGS, max_examples=40)
@given(histories(), definitions(), definitions(), st.data())
def test_an_edited_rule_set_reads_the_old_state_as_the_python_program_does(
    arrivals: list[Arrival],
    first: tuple[dict[str, str], dict[str, str]],
    second: tuple[dict[str, str], dict[str, str]],
    data: st.DataObject,
) -> None:
    before = side_by_side(*first)
    after = side_by_side(*second)
    old, new = before.py.plan.slots, after.py.plan.slots
    for key in old.keys() & new.keys():
        if new[key].paths != old[key].paths[: len(new[key].paths)]:
            # the Python program reads an entry's values by position: another path now (a
            # wrong value) or none (IndexError); the kernel by path. A rule-set backfill
            # rebuilds either state; where the positions still hold, the answers must agree.
            return
    cut = data.draw(st.integers(1, len(arrivals)))
    for a in arrivals[:cut]:
        before.feed(a)
    after.profiles = before.profiles
    for a in arrivals[cut:]:
        after.feed(a)


# --- a small world: few names, many ties, repeats, late events, sequence-heavy rules --------------

NAMES3 = ["A", "B", "C"]
small_values = st.sampled_from(
    [0, 1, 2, 2.5, -1, True, False, "x", "y", "", None, [1, "x"], {"k": 1}]
)
names3 = st.sampled_from(['"A"', '"B"', '"C"', "any event", "page", 'page "Home"', "identify"])
where3 = st.sampled_from(
    ["", "", " where v > 1", ' where v = "x"', " where v exists", ' where not v in [1, "y"]']
)
sel3 = st.builds(lambda n, w: n + w, names3, where3)
win3 = st.sampled_from(
    [
        "",
        " in last 1 hour",
        " in last 90 minutes",
        " between 3 and 1 hours ago",
        " before 2 hours ago",
        " in last 2 days",
    ]
)
within3 = st.sampled_from(
    ["", " within 30 minutes", " within 1 hour", " within 2 hours", " within 1 day"]
)
atoms3 = st.one_of(
    st.builds(lambda s, w, n: f"did {s} at least {n} times{w}", sel3, win3, st.integers(1, 3)),
    st.builds(
        lambda s, f, w, op, v: f"{f}(v of {s}{w}) {op} {v}",
        sel3,
        st.sampled_from(["sum", "avg", "min", "max", "unique_count"]),
        win3,
        st.sampled_from([">", "<=", "="]),
        st.sampled_from(["0", "1", "2.5"]),
    ),
    st.builds(
        lambda s, f, w: f'{f}(v of {s}{w}) = "x"',
        sel3,
        st.sampled_from(["first", "last", "most_frequent"]),
        win3,
    ),
    st.builds(lambda s, w: f'unique_list(v of {s}{w}) contains "1"', sel3, win3),
    st.builds(lambda a, b, w: f"did {a} then {b}{w}", sel3, sel3, within3),
    st.builds(
        lambda a, b, c, w1, w2: f"did {a} then {b}{w1} then not {c}{w2}",
        sel3,
        sel3,
        sel3,
        within3,
        within3,
    ),
    st.builds(lambda a, c, w: f"did {a} then not {c}{w}", sel3, sel3, within3),
    st.builds(
        lambda s, k, n: f"did {s} on at least {k} of last {n} hours",
        sel3,
        st.integers(1, 2),
        st.integers(2, 3),
    ),
    st.sampled_from(
        [
            "is anonymous",
            "first seen in last 2 hours",
            'trait plan = "pro"',
            "trait plan exists",
            "trait since in last 3 hours",
            "trait since before 1 hour ago",
            'trait v contains "x"',
        ]
    ),
)
rules3 = st.recursive(
    atoms3,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=2,
)
traits3 = st.dictionaries(
    st.sampled_from(["t1", "t2", "t3"]),
    st.builds(
        lambda f, s, w: f"{f}(v of {s}{w})" if f != "count" else f"count({s}{w})",
        st.sampled_from(get_args(AggFunc)),
        sel3,
        win3,
    ),
    max_size=3,
)


@st.composite
def small_histories(draw: Any) -> list[Arrival]:
    n = draw(st.integers(1, 30))
    out: list[Arrival] = []
    for i in range(n):
        if out and draw(st.integers(0, 9)) == 0:  # delivered again (at least once), maybe later
            again = draw(st.sampled_from(out))
            out.append(
                Arrival(
                    again.profile_id,
                    again.event,
                    again.arrived_ms + draw(st.sampled_from([0, MIN, 3 * 3_600_000])),
                )
            )
            continue
        ts = BASE + draw(st.integers(0, 40)) * 15 * MIN
        kind = draw(st.sampled_from(["track"] * 5 + ["page", "identify"]))
        common: dict[str, Any] = dict(
            message_id=draw(st.sampled_from([f"m{i}", f"m{i % 3}", f"n{i}"])),
            source_id="s",
            timestamp_ms=ts,
            received_at_ms=ts,
            user_id=draw(st.sampled_from([None, None, "u"])),
        )
        if kind == "identify":
            traits = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "plan": st.sampled_from(["pro", "free", None]),
                        "since": st.sampled_from(
                            [ts - 3_600_000, ts, "2023-11-14T22:00:00Z", "nope", 1.5]
                        ),
                        "v": small_values,
                    },
                )
            )
            event = Event(type="identify", traits=traits, **common)
        elif kind == "page":
            event = Event(
                type="page",
                name=draw(st.sampled_from(["Home", "Other"])),
                properties={"v": draw(small_values)},
                **common,
            )
        else:
            event = Event(
                type="track",
                event=draw(st.sampled_from(NAMES3)),
                properties={"v": draw(small_values)},
                **common,
            )
        late = draw(st.sampled_from([0, 0, 0, 1, 2]))
        delay = (0, -30 * MIN, 2 * 3_600_000)[late]
        out.append(Arrival(draw(st.sampled_from(["p1", "p2"])), event, ts + delay))
    out.sort(key=lambda a: a.arrived_ms)
    return out


@needs_kernel
@settings(SETTINGS, max_examples=250)
@given(small_histories(), st.lists(rules3, min_size=1, max_size=3), traits3, st.data())
def test_a_small_world_of_ties_repeats_and_sequences_gives_the_same_answers(
    arrivals: list[Arrival], rules: list[str], traits: dict[str, str], data: st.DataObject
) -> None:
    segments = {f"s{i}": r for i, r in enumerate(rules)}
    segments["dep"] = f'in segment "s0" and not ({rules[-1]})'
    both = side_by_side(segments, traits, swap=True)
    if data.draw(st.booleans()):
        run_history(both, arrivals, [3_600_000, 2 * DAY])
    else:
        i = 0
        while i < len(arrivals):
            size = data.draw(st.integers(1, 5))
            both.feed_batch(arrivals[i : i + size])
            i += size
        both.fire(arrivals[-1].arrived_ms + 2 * DAY)


# --- deterministic cases -----------------------------------------------------------------------


def _track(mid: str, ts: int, name: str = "A", **props: Any) -> Event:
    return Event(
        type="track", message_id=mid, source_id="s", timestamp_ms=ts, received_at_ms=ts,
        event=name, properties=props,
    )  # fmt: skip


@needs_kernel
def test_ties_in_time_are_broken_by_message_id_and_repeats_are_ignored() -> None:
    both = side_by_side(
        {"first_x": 'first(c of "A") = "x"', "n3": 'did "A" at least 3 times in last 1 hour'},
        {"first": 'first(c of "A")', "last": 'last(c of "A" in last 1 hour)', "n": 'count("A")'},
    )
    t = BASE
    for mid, c in [("m10", "y"), ("m09", "x"), ("m10", "z"), ("m2", "w"), ("m09", "q")]:
        both.feed(Arrival("p", _track(mid, t, c=c), t))
    p = both.profiles["p"]
    assert p.last.computed_traits == {"first": "x", "last": "w", "n": 3}
    assert p.last.members == {"first_x", "n3"}


@needs_kernel
def test_a_message_id_delivered_again_with_another_payload_keeps_the_first() -> None:
    # ties on (ts, message id) between folded events: the first folded wins, as in the reference
    traits = {
        "first": 'first(c of "A")',
        "last": 'last(c of "A")',
        "top": 'most_frequent(c of "A")',
    }
    both = side_by_side({"pro": 'trait plan = "pro"', "seen": 'first(c of "A") = "x"'}, traits)
    t = BASE
    for i, (plan, c) in enumerate([("pro", "x"), ("free", "y"), ("free", "y")]):
        ident = Event(
            type="identify", message_id="i1", source_id="s", timestamp_ms=t,
            received_at_ms=t, traits={"plan": plan},
        )  # fmt: skip
        both.feed(Arrival("p", ident, t + i * MIN))
        both.feed(Arrival("p", _track("m1", t, c=c), t + i * MIN))
    last = both.profiles["p"].last
    assert last.members == {"pro", "seen"}
    assert last.computed_traits == {"first": "x", "last": "x", "top": "y"}


HOUR = 3_600_000


@needs_kernel
def test_late_sequence_events_fold_in_arrival_order() -> None:
    # entries older than late_ms (1 hour) are folded into the sequence's machine as they come:
    # a "not B" at the anchor's own time is not after it, whatever order they were folded in
    both = side_by_side({"s": 'did "A" then not "B"'}, {})
    both.feed(Arrival("p", _track("a1", BASE, "A"), BASE))
    both.feed(Arrival("p", _track("a0", BASE - 10 * MIN, "A"), BASE + 2 * HOUR))
    both.feed(Arrival("p", _track("b1", BASE, "B"), BASE + 3 * HOUR))
    assert both.profiles["p"].last.members == {"s"}


@needs_kernel
def test_a_sequence_fold_remembers_the_latest_time_it_holds() -> None:
    # a late event folded after later ones leaves the fold's "up to" at the later time, so a
    # profile whose events fall before it cannot merge exactly
    both = side_by_side({"s": 'did "A" then "B" within 2 hours'}, {})
    both.feed(Arrival("p", _track("a1", BASE + 90 * MIN, "A"), BASE + 90 * MIN))
    both.feed(Arrival("p", _track("a2", BASE + 4 * HOUR, "A"), BASE + 4 * HOUR))  # folds a1
    both.feed(Arrival("p", _track("a0", BASE, "A"), BASE + 4 * HOUR + 1))  # folds a0 alone
    both.feed(Arrival("q", _track("b1", BASE + 60 * MIN, "B"), BASE + 60 * MIN))
    p, q = both.profiles["p"], both.profiles["q"]
    assert not both.py.can_merge(p.py, q.py) and not both.k.can_merge(p.k, q.k)


@needs_kernel
def test_signed_zeros_fold_as_python_compares_them() -> None:
    # min/max keep the value they hold on a tie: min(0.0, -0.0) is 0.0, min(-0.0, 0.0) is -0.0;
    # all-time aggregates of "A" fold each event at once, windowed ones of "B" keep entries
    traits = {
        f"{f}_{e}": f'{f}(v of "{e}"{w})'
        for f in ("min", "max", "sum")
        for e, w in (("A", ""), ("B", " in last 1 hour"))
    }
    for first, second in ((0.0, -0.0), (-0.0, 0.0), (0, -0.0)):
        both = side_by_side({}, traits)
        for i, v in enumerate((first, second)):
            for name in ("A", "B"):
                both.feed(Arrival("p", _track(f"{name}{i}", BASE + i, name, v=v), BASE + i))
        both.fire(BASE + 2 * HOUR)


@needs_kernel
def test_every_kind_of_value_and_its_python_type() -> None:
    traits = {
        f"{f}_{p}": f'{f}({p} of "A")'
        for f in get_args(AggFunc)
        if f != "count"
        for p in ("v", "w")
    } | {"n": 'count("A")', "recent": 'sum(v of "A" in last 1 hour)'}
    both = side_by_side({"s": 'trait plan = "pro"'}, traits)
    values: list[Any] = [1, 2.5, True, "x", None, {"a": 1}, [1], -0.0, 2**63 + 5, "ü", 3, "x"]
    for i, v in enumerate(values):
        ts = BASE + i * MIN
        both.feed(Arrival("p", _track(f"m{i:02d}", ts, v=v, w=values[-1 - i]), ts))
    both.fire(BASE + 3 * DAY)
    assert both.profiles["p"].last.computed_traits["unique_list_v"] == sorted(
        {"1", "true", "x", "ü", "3", str(2**63 + 5)}
    )


@needs_kernel
def test_a_kernel_state_is_compact_and_versioned() -> None:
    both = side_by_side({"v3": 'did "View" at least 3 times in last 1 hour'}, {})
    for i in range(500):
        ts = BASE + i * MIN
        both.feed(Arrival("p", _track(f"m{i}", ts, "View"), ts))
    p = both.profiles["p"]
    assert p.k is not None and p.py is not None
    assert kernel_format.is_kernel_state(p.k) and not kernel_format.is_kernel_state(p.py)
    assert len(p.k) < len(p.py)
    layout = build_layout(both.py.plan)
    assert kernel_format.decode(p.k, layout).slots == decode(p.py).slots


@needs_kernel
def test_a_state_of_another_rule_set_keeps_its_events_and_recomputes_results() -> None:
    first = kernel.KernelProgram(compile_segments({"v": 'did "View" at least 2 times'}))
    state = first.on_event(StaticProfile("p"), None, _track("m1", BASE, "View"), BASE).state
    second = kernel.KernelProgram(compile_segments({"v": 'did "View" at least 1 times'}))
    assert second.on_time(StaticProfile("p"), state, BASE).members == {"v"}


@needs_kernel
def test_a_trait_read_with_other_predicates_after_an_edit() -> None:
    ident = Event(
        type="identify", message_id="i1", source_id="s", timestamp_ms=BASE + 5 * MIN,
        received_at_ms=BASE, traits={"email": "a", "plan": "pro"},
    )  # fmt: skip
    first = kernel.KernelProgram(compile_segments({"e": "trait email exists"}))
    state = first.on_event(StaticProfile("p"), None, ident, BASE).state  # (from the future)
    state = first.on_event(StaticProfile("p"), state, _track("m1", BASE), BASE).state
    rules = {"e": 'trait email = "a" and trait email != "b"', "p": 'trait plan in ["x", "pro"]'}
    both = side_by_side(rules, {})
    py = both.py.on_time(StaticProfile("p"), state, BASE + 5 * MIN)
    k = both.k.on_time(StaticProfile("p"), state, BASE + 5 * MIN)
    same(py, k, "edit")
    assert k.members == {"e"}


CORRUPT = """
import random
from segflow.rules import StaticProfile, compile_segments, parser
from segflow.rules.incremental.kernel import KernelProgram
from segflow.spec.events import Event

rules = {
    "a": 'did "A" at least 2 times in last 1 hour and trait plan = "pro"',
    "b": 'did "A" then not "B" within 1 hour',
    "c": "did any event on at least 2 of last 3 days",
}
k = KernelProgram(compile_segments(rules, {"f": 'first(c of "A")', "u": 'unique_list(c of "A")'}))
rng = random.Random(7)
state = None
for i in range(60):
    t = 1_700_000_000_000 + i * 600_000
    if i % 7 == 0:
        ev = Event(type="identify", message_id=f"i{i}", source_id="s", timestamp_ms=t,
                   received_at_ms=t, traits={"plan": rng.choice(["pro", "free"])})
    else:
        ev = Event(type="track", message_id=f"m{i}", source_id="s", timestamp_ms=t - rng.randint(0, 3) * 3_600_000,
                   received_at_ms=t, event=rng.choice("AB"), properties={"c": rng.choice(["x", "y", 1])})
    state = k.on_event(StaticProfile("p"), state, ev, t).state
def corrupted(state):  # every byte set to 0, 1 and 255 in turn; every truncation
    for j in range(12, len(state)):
        for value in (0, 1, 255):
            s = bytearray(state)
            s[j] = value
            yield bytes(s)
        yield state[:j]


late = Event(type="track", message_id="late", source_id="s", timestamp_ms=t - 7_200_000,
             received_at_ms=t, event="B", properties={"c": "x"})  # folded at once
raised = 0
for s in corrupted(state):
    for probe in (ev, late):
        try:
            r = k.on_event(StaticProfile("p"), s, probe, t + 1)
            k.on_time(StaticProfile("p"), r.state, t + 10**9)
        except Exception:
            raised += 1
print(raised)
"""


@needs_kernel
def test_a_corrupted_state_raises_and_never_crashes_the_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CORRUPT], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) > 0  # (most corruptions are found; some happen to read as a state)


def test_the_layout_refuses_what_the_kernel_does_not_cover(monkeypatch: pytest.MonkeyPatch) -> None:
    # the parser refuses such a window (rules.parser.MAX_WINDOW_MS); the layout still guards
    # against a tree that did not come through it
    monkeypatch.setattr(parser, "MAX_WINDOW_MS", 10**30)
    plan = compile_segments({"s": 'did "A" in last 99999999999999999 weeks'}).plan
    with pytest.raises(Unsupported):
        build_layout(plan)
    assert kernel.compile_kernel(SegmentProgram(plan, {}, {})).__class__ is SegmentProgram


def test_without_the_extension_the_factory_returns_the_python_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prog = compile_segments({"s": 'did "A"'})
    monkeypatch.setattr(kernel, "AVAILABLE", False)
    assert kernel.compile_kernel(prog) is prog


def test_segflow_kernel_0_turns_the_kernel_off_in_a_new_process() -> None:
    code = (
        "from segflow.rules import compile_segments\n"
        "from segflow.rules.incremental import kernel\n"
        "p = compile_segments({'s': 'did \"A\"'})\n"
        "print(kernel.AVAILABLE, type(kernel.compile_kernel(p)).__name__)\n"
    )
    env = {**os.environ, "SEGFLOW_KERNEL": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "SegmentProgram"]


@needs_kernel
def test_the_python_program_reads_a_kernel_state() -> None:
    prog = compile_segments({"n2": 'did "A" at least 2 times in last 1 hour'})
    k = kernel.KernelProgram(prog)
    state = k.on_event(StaticProfile("p"), None, _track("m1", BASE), BASE).state
    state = k.on_event(StaticProfile("p"), state, _track("m2", BASE + 1), BASE + 1).state
    res = prog.on_time(StaticProfile("p"), state, BASE + 2)
    assert res.members == {"n2"} and res.next_wakeup_ms == BASE + 3_600_000


class _Slotted:
    """An event of no msgspec type whose fields are slots (read at their offsets too)."""

    __slots__ = ("event", "message_id", "name", "properties", "timestamp_ms", "traits", "type",
                 "user_id")  # fmt: skip

    def __init__(self, e: Event) -> None:
        for f in _Slotted.__slots__:
            setattr(self, f, getattr(e, f))


class _Computed:
    """An event whose every field is computed on access (read through getattr)."""

    def __init__(self, e: Event) -> None:
        self._e = e

    def __getattr__(self, name: str) -> Any:
        return getattr(self._e, name)


def _narrow(e: Event) -> Any:
    from segflow.spec.events import encode_event
    from segflow.stream.decode import decode_stream_event

    return decode_stream_event(encode_event(e))


def _propertyless(e: Event) -> Any:
    from segflow.spec.events import encode_event
    from segflow.stream.decode import decode_propertyless

    return decode_propertyless(encode_event(e))


@needs_kernel
@settings(SETTINGS, max_examples=60)
@given(histories(), definitions(), models, clusters)
def test_every_type_of_event_is_read_as_an_exact_event_is(
    arrivals: list[Arrival], defs: tuple[dict[str, str], dict[str, str]], scores: Any, labels: Any
) -> None:
    # the kernel reads the fields of each type of event at their offsets when they are slots
    # (Event, the processor's StreamEvent, any slotted class) and through getattr otherwise
    # (PropertylessEvent's properties, computed attributes): the Python program's answers
    from segflow.spec.events import encode_event
    from segflow.stream.decode import picking_decoder, property_keys

    py = compile_segments(*defs)
    k = kernel.KernelProgram(py)
    keys = property_keys(py)
    converts: list[Any] = [_narrow, _propertyless, _Slotted, _Computed]
    if keys is not None:  # only the keys the rule set reads, in a struct the kernel reads
        converts.append(lambda e: picking_decoder(keys)(encode_event(e)))
    for convert in converts:
        states: dict[str, tuple[Any, Any]] = {}
        for a in arrivals:
            view = StaticProfile(a.profile_id, scores=scores.get(a.profile_id, {}),
                                 clusters=labels.get(a.profile_id, {}))  # fmt: skip
            ps, ks = states.get(a.profile_id, (None, None))
            # a PropertylessEvent reads as an event without properties, to both evaluators
            ev = convert(a.event) if convert is _propertyless else a.event
            r_py = py.on_event(view, ps, ev, a.arrived_ms)
            r_k = k.on_event(view, ks, convert(a.event), a.arrived_ms)
            same(r_py, r_k, (convert, a.event.message_id))
            states[a.profile_id] = (r_py.state, r_k.state)


@needs_kernel
def test_more_types_of_event_than_the_kernel_keeps_offsets_for_are_read_through_getattr() -> None:
    both = side_by_side({"big": 'did "A" where v > 1'}, {"total": 'sum(v of "A")'})
    k, py = both.k, both.py
    kinds = [type(f"Slotted{i}", (_Slotted,), {"__slots__": ()}) for i in range(12)]
    ks = ps = None
    for i, kind in enumerate(kinds):
        e = _track(f"m{i:02d}", BASE + i, v=i)
        ks = k.on_event(StaticProfile("p"), ks, kind(e), BASE + i).state
        r = py.on_event(StaticProfile("p"), ps, e, BASE + i)
        ps = r.state
    last = k.on_time(StaticProfile("p"), ks, BASE + 20)
    same(py.on_time(StaticProfile("p"), ps, BASE + 20), last, "after 12 types")
    assert last.computed_traits == {"total": sum(range(12))} and last.members == {"big"}


@needs_kernel
def test_an_unset_slot_raises_attribute_error() -> None:
    k = kernel.KernelProgram(compile_segments({"s": 'did "A"'}))
    event = _Slotted(_track("m1", BASE))
    del event.message_id
    with pytest.raises(AttributeError):
        k.on_event(StaticProfile("p"), None, event, BASE)


@needs_kernel
def test_picked_properties_are_read_from_their_struct_in_cpp() -> None:
    # the kernel builds the dict of the picked keys itself: the event type's Python
    # ``properties`` is never called (here it would raise)
    from segflow.spec.events import encode_event
    from segflow.stream.decode import picking_decoder

    decode = picking_decoder(("revenue", "zz-only-in-this-test"))
    events = [decode(encode_event(_track(f"m{i}", BASE + i, v=1, revenue=i))) for i in range(4)]
    events.append(decode(encode_event(_track("m9", BASE + 9))))  # no revenue: not counted
    assert events[1].properties == {"revenue": 1} and events[-1].properties == {}

    def refuse(self: Any) -> Any:
        raise AssertionError("read through getattr")

    type(events[0]).properties = property(refuse)  # type: ignore[method-assign,assignment]
    k = kernel.KernelProgram(compile_segments({}, {"n": 'count("A" where revenue exists)',
                                                   "s": 'sum(revenue of "A")'}))  # fmt: skip
    res = k.on_events(StaticProfile("p"), None, events, BASE + 10)
    assert res.computed_traits == {"n": 4, "s": 6}
