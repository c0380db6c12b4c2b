"""The incremental evaluator: windows, timers, bounded state, out-of-order events, merges.

Every test runs on both evaluators: the Python program and the compiled kernel built from it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segflow.clock import DAY_MS, HOUR_MS, MINUTE_MS, ManualClock
from segflow.rules import StaticProfile, compile_segments
from segflow.rules.incremental import kernel
from segflow.rules.incremental.kernel import format as kernel_format
from segflow.rules.incremental.state import ProfileState, decode
from segflow.spec.events import Event

DOC = Path(__file__).resolve().parents[3] / "docs" / "segments.md"
T0 = 1_700_000_000_000
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
Compile = Callable[..., Any]


@pytest.fixture(params=EVALUATORS)
def compile_rules(request: pytest.FixtureRequest) -> Compile:
    """``compile_segments``, or the compiled kernel of what it compiles."""

    def make(rules: dict[str, str], traits: dict[str, str] | None = None, **kw: Any) -> Any:
        program = compile_segments(rules, traits or {}, **kw)
        return program if request.param == "python" else kernel.KernelProgram(program)

    return make


def state_of(program: Any, state: bytes | None) -> ProfileState:
    if kernel_format.is_kernel_state(state):
        return kernel_format.decode(state or b"", program.layout)
    return decode(state)


class Runner:
    """Drives one profile through a program the way the processor does (timers on wake-up)."""

    def __init__(
        self, program: Any, clock: ManualClock, profile: StaticProfile | None = None
    ) -> None:
        self.program, self.clock = program, clock
        self.profile = profile or StaticProfile("p1")
        self.state: bytes | None = None
        self.members: frozenset[str] = frozenset()
        self.traits: dict[str, Any] = {}
        self.wake: int | None = None
        self.n = 0

    def _apply(self, res: Any) -> None:
        self.state, self.members, self.traits, self.wake = (
            res.state,
            res.members,
            dict(res.computed_traits),
            res.next_wakeup_ms,
        )

    def track(self, name: str, at_ms: int | None = None, **props: Any) -> None:
        self.n += 1
        ts = self.clock.now_ms() if at_ms is None else at_ms
        event = Event(
            type="track",
            message_id=f"m{self.n}",
            source_id="s",
            timestamp_ms=ts,
            received_at_ms=self.clock.now_ms(),
            event=name,
            properties=props,
        )
        self._apply(self.program.on_event(self.profile, self.state, event, self.clock.now_ms()))

    def advance(self, delta_ms: int) -> None:
        target = self.clock.now_ms() + delta_ms
        while self.wake is not None and self.wake <= target:
            self.clock.set(self.wake)
            self._apply(self.program.on_time(self.profile, self.state, self.wake))
        self.clock.set(target)


def run(
    compile_rules: Compile,
    rules: dict[str, str],
    traits: dict[str, str] | None = None,
) -> Runner:
    return Runner(compile_rules(rules, traits or {}), ManualClock(T0))


def test_window_exit_fires_exactly_at_the_boundary(compile_rules: Compile) -> None:
    r = run(compile_rules, {"v3": 'did "View" at least 3 times in last 1 hour'})
    for _ in range(3):
        r.track("View")
        r.advance(10 * MINUTE_MS)
    assert r.members == {"v3"}
    assert r.wake == T0 + HOUR_MS
    r.advance(30 * MINUTE_MS - 1)
    assert r.members == {"v3"}
    r.advance(1)
    assert r.members == frozenset()


def test_abandoned_cart_enters_when_the_hour_passes_without_an_event(
    compile_rules: Compile,
) -> None:
    r = run(compile_rules, {"cart": 'did "Product Added" then not "Order Completed" within 1 hour'})
    r.track("Product Added")
    assert r.members == frozenset() and r.wake == T0 + HOUR_MS
    r.advance(HOUR_MS)
    assert r.members == {"cart"}
    r.track("Product Added")
    assert r.members == frozenset()
    r.advance(30 * MINUTE_MS)
    r.track("Order Completed")
    r.advance(2 * HOUR_MS)
    assert r.members == frozenset()


def test_an_order_exactly_at_the_deadline_still_counts(compile_rules: Compile) -> None:
    r = run(compile_rules, {"cart": 'did "Product Added" then not "Order Completed" within 1 hour'})
    r.track("Product Added")
    r.advance(HOUR_MS - 1)
    r.clock.advance(1)
    r.track("Order Completed")
    assert r.members == frozenset()


def test_same_millisecond_is_not_then(compile_rules: Compile) -> None:
    r = run(compile_rules, {"seq": 'did "A" then "B" within 1 minute'})
    r.track("A")
    r.track("B")
    assert r.members == frozenset()
    r.advance(1)
    r.track("B")
    assert r.members == {"seq"}


def test_dormant_enters_after_14_days_and_leaves_on_next_event(compile_rules: Compile) -> None:
    r = run(compile_rules, {"dormant": "not did any event in last 14 days"})
    r.track("Anything")
    assert r.members == frozenset()
    r.advance(14 * DAY_MS)
    assert r.members == {"dormant"}
    r.track("Back")
    assert r.members == frozenset()


def test_future_events_count_when_their_time_comes(compile_rules: Compile) -> None:
    r = run(compile_rules, {"buyer": 'did "Order Completed"'})
    r.track("Order Completed", at_ms=T0 + HOUR_MS)
    assert r.members == frozenset() and r.wake == T0 + HOUR_MS
    r.advance(HOUR_MS)
    assert r.members == {"buyer"}


def test_late_events_are_exact_and_old_ones_are_dropped_from_windows(
    compile_rules: Compile,
) -> None:
    r = run(compile_rules, {"v2": 'did "View" at least 2 times in last 1 day'})
    r.clock.advance(DAY_MS)
    r.track("View", at_ms=T0 + 1)
    r.track("View", at_ms=T0 - 5)
    assert r.members == frozenset()
    r.track("View", at_ms=T0 + 2)
    assert r.members == {"v2"}
    slot = next(iter(state_of(r.program, r.state).slots.values()))
    assert [e.ts for e in slot.entries] == [T0 + 1, T0 + 2]


def test_all_time_aggregates_fold_old_events(compile_rules: Compile) -> None:
    r = run(
        compile_rules,
        {"big": 'sum(revenue of "Order Completed") >= 100'},
        {"n": 'count("Order Completed")', "last": 'last(sku of "Order Completed")'},
    )
    for i in range(50):
        r.track("Order Completed", revenue=2.5, sku=f"s{i}")
        r.advance(MINUTE_MS)
    assert r.members == {"big"} and r.traits == {"n": 50, "last": "s49"}
    slot = next(iter(state_of(r.program, r.state).slots.values()))
    assert len(slot.entries) == 0 and slot.fold is not None and slot.fold.count == 50


def test_periods_and_computed_traits_in_rules(compile_rules: Compile) -> None:
    r = run(
        compile_rules,
        {"regular": 'did "Workout" in at least 3 of last 4 weeks', "fan": 'computed fav = "run"'},
        {"fav": 'most_frequent(kind of "Workout")'},
    )
    for kind in ("run", "swim", "run"):
        r.track("Workout", kind=kind)
        r.advance(7 * DAY_MS)
    assert r.members == {"regular", "fan"}
    r.advance(14 * DAY_MS)
    assert r.members == {"fan"}


def test_segment_of_segment_follows_its_dependency(compile_rules: Compile) -> None:
    r = run(
        compile_rules,
        {"recent": 'did "View" in last 1 hour', "lapsed": 'did "View" and not in segment "recent"'},
    )
    r.track("View")
    assert r.members == {"recent"}
    r.advance(HOUR_MS)
    assert r.members == {"lapsed"}


def test_scores_and_clusters_from_the_profile(compile_rules: Compile) -> None:
    rules = {"risk": 'score churn >= 0.7 and cluster customer_segments = "High spenders"'}
    program = compile_rules(rules)
    high = StaticProfile(
        "p", scores={"churn": 0.8}, clusters={"customer_segments": "High spenders"}
    )
    assert program.on_time(high, None, T0).members == {"risk"}
    assert program.on_time(StaticProfile("q"), None, T0).members == frozenset()


def test_merge_states_combines_histories(compile_rules: Compile) -> None:
    program = compile_rules({"v2": 'did "View" at least 2 times'})
    a, b = Runner(program, ManualClock(T0)), Runner(program, ManualClock(T0), StaticProfile("p2"))
    a.track("View")
    b.n = 10
    b.track("View")
    merged = program.merge_states(a.state, b.state)
    assert program.on_time(StaticProfile("p1"), merged, T0).members == {"v2"}


def test_editing_a_rule_recomputes_cached_results(compile_rules: Compile) -> None:
    first = compile_rules({"v": 'did "View" at least 2 times'})
    r = Runner(first, ManualClock(T0))
    r.track("View")
    assert r.members == frozenset()
    second = compile_rules({"v": 'did "View" at least 1 times'})
    assert second.on_time(r.profile, r.state, T0).members == {"v"}


def _doc_blocks(kind: str) -> dict[str, str]:
    return {
        m[1]: m[2].strip()
        for m in re.finditer(rf"```{kind} (\S+)\n(.*?)```", DOC.read_text(), re.S)
    }


def test_every_documented_example_parses_and_evaluates(compile_rules: Compile) -> None:
    rules, traits = _doc_blocks("rule"), _doc_blocks("trait")
    assert len(rules) >= 16 and len(traits) >= 8
    program = compile_rules(rules, traits)
    r = Runner(program, ManualClock(T0), StaticProfile("p", scores={"churn": 0.9}))
    r.track("Product Added")
    r.advance(2 * HOUR_MS)
    assert "abandoned_cart" in r.members and "dormant" not in r.members
    assert set(r.traits) == set(traits)


@pytest.mark.parametrize("late_ms", [0, HOUR_MS])
def test_state_stays_bounded_for_windowed_rules(compile_rules: Compile, late_ms: int) -> None:
    program = compile_rules({"v3": 'did "View" at least 3 times in last 1 hour'}, late_ms=late_ms)
    r = Runner(program, ManualClock(T0))
    for _ in range(500):
        r.track("View")
        r.advance(MINUTE_MS)
    assert len(r.state or b"") < 60 * 40


def test_explain_lists_conditions_values_and_event_times(compile_rules: Compile) -> None:
    r = run(
        compile_rules,
        {
            "shoes": 'did "View" where category = "shoes" at least 2 times in last 1 hour and trait plan = "pro"'
        },
    )
    r.track("View", category="shoes")
    r.advance(5 * MINUTE_MS)
    r.track("View", category="shoes")
    found = r.program.explain(r.profile, r.state, "shoes", r.clock.now_ms())
    assert [(e.condition, e.holds, e.value) for e in found] == [
        (
            '(count("View" where category = "shoes" in last 1 hour) >= 2 and trait plan = "pro")',
            False,
            None,
        ),
        ('count("View" where category = "shoes" in last 1 hour) >= 2', True, 2),
        ('trait plan = "pro"', False, None),
    ]
    assert found[1].event_times_ms == (T0, T0 + 5 * MINUTE_MS)
