"""Membership history is bitemporal (issue #17): valid time is what the rules say over the
events known now (``members?at_ms=T`` equals the SQL preview at T); recorded time is when
segflow committed each change. The five cases the issue reports, through the real pipeline
and the HTTP API."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.pipeline import Pipeline, event

from segflow.clock import DAY_MS, HOUR_MS
from segflow.profiles import Profile
from segflow.stream.batch import Batch
from segflow.stream.history import valid_history
from segflow.stream.state import MemoryStateStore

NOW = 1_796_515_984_000
SECOND_MS = 1000


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[Pipeline]:
    with Pipeline(tmp_path, NOW) as found:
        yield found


def members(pipe: Pipeline, segment: str, at_ms: int, *, recorded: bool = False) -> list[str]:
    query = f"at_ms={at_ms}" + ("&as_recorded=true" if recorded else "")
    return pipe.get(f"/api/v1/segments/{segment}/members?{query}")["members"]  # type: ignore[no-any-return]


def preview(pipe: Pipeline, rule: str, at_ms: int) -> list[str]:
    return pipe.service.preview(rule, at_ms=at_ms).sample


def history(pipe: Pipeline, ident: str) -> dict[str, Any]:
    return pipe.get(f"/api/v1/profiles/{ident}/segments/history")  # type: ignore[no-any-return]


def intervals(rows: list[dict[str, Any]]) -> list[tuple[str, int, int | None]]:
    return [(r["segment"], r["entered_at_ms"], r["exited_at_ms"]) for r in rows]


def assert_recorded_intervals_are_ordered(found: dict[str, Any]) -> None:
    for row in found["recorded"]:
        assert row["exited_at_ms"] is None or row["exited_at_ms"] >= row["entered_at_ms"], row


def test_orders_sent_newest_first_enter_when_their_sum_is_reached(pipe: Pipeline) -> None:
    rule = 'sum(revenue of "Order Completed" in last 90 days) >= 400'
    pipe.segment("big", rule)
    for n, (days, revenue) in enumerate([(10, 250), (20, 149.5), (80, 0.5)]):
        order = event("track", NOW - days * DAY_MS, f"o{n}", user_id="u1",
                      event="Order Completed", properties={"revenue": revenue})  # fmt: skip
        pipe.send([order])
    pid = pipe.profile_id("user_id:u1")

    assert members(pipe, "big", NOW - 50 * DAY_MS) == [] == preview(pipe, rule, NOW - 50 * DAY_MS)
    assert (
        members(pipe, "big", NOW - 10 * DAY_MS) == [pid] == preview(pipe, rule, NOW - 10 * DAY_MS)
    )
    found = history(pipe, "user_id:u1")
    # in by event time from the 250 order (the third to arrive) until the 0.5 leaves the window
    assert intervals(found["valid"]) == [("big", NOW - 10 * DAY_MS, None)]
    # segflow knew it from the moment it processed the last order
    assert intervals(found["recorded"]) == [("big", NOW, None)]
    assert members(pipe, "big", NOW - 50 * DAY_MS, recorded=True) == []
    assert members(pipe, "big", NOW, recorded=True) == [pid]


def test_an_abandoned_cart_counts_from_when_its_window_runs_out(pipe: Pipeline) -> None:
    rule = 'did "Product Added" then not "Order Completed" within 20 seconds'
    pipe.segment("abandoned", rule)
    added = NOW - 30 * SECOND_MS
    pipe.send([event("track", added, "a1", user_id="u2", event="Product Added")])
    pid = pipe.profile_id("user_id:u2")

    assert members(pipe, "abandoned", NOW - 25 * SECOND_MS) == []
    assert preview(pipe, rule, NOW - 25 * SECOND_MS) == []
    assert members(pipe, "abandoned", NOW - 5 * SECOND_MS) == [pid]
    [(segment, entered, exited)] = intervals(history(pipe, "user_id:u2")["valid"])
    assert (segment, exited) == ("abandoned", None)
    assert added + 20 * SECOND_MS <= entered <= added + 20 * SECOND_MS + 1
    assert members(pipe, "abandoned", entered - 1) == []
    assert members(pipe, "abandoned", entered) == [pid]


def test_a_late_identify_dates_the_entry_at_the_view_that_made_the_rule_true(
    pipe: Pipeline,
) -> None:
    rule = 'did "Product Viewed" at least 3 times'
    pipe.segment("viewer", rule)
    views = [
        event("track", NOW - 5 * HOUR_MS, "v1", anonymous_id="a3", event="Product Viewed"),
        event("track", NOW - 4 * HOUR_MS, "v2", anonymous_id="a3", event="Product Viewed"),
        event("track", NOW - 1 * HOUR_MS, "v3", user_id="u3", event="Product Viewed"),
    ]
    pipe.send(views)
    # the identify that links them happened 3 hours ago, and arrives now
    pipe.send([event("identify", NOW - 3 * HOUR_MS, "i1", anonymous_id="a3", user_id="u3")])
    pid = pipe.profile_id("user_id:u3")

    assert (
        members(pipe, "viewer", NOW - 2 * HOUR_MS) == [] == preview(pipe, rule, NOW - 2 * HOUR_MS)
    )
    assert members(pipe, "viewer", NOW - HOUR_MS) == [pid] == preview(pipe, rule, NOW - HOUR_MS)
    found = history(pipe, "user_id:u3")
    assert intervals(found["valid"]) == [("viewer", NOW - HOUR_MS, None)]
    assert_recorded_intervals_are_ordered(found)


def test_events_older_than_a_new_segment_never_make_an_exit_before_the_entry(
    pipe: Pipeline,
) -> None:
    pipe.send([event("page", NOW - 2 * HOUR_MS, "p1", user_id="u4", name="Home")])
    rule = 'not did "Order Completed"'
    pipe.segment("no_order", rule)  # created now: the backfill puts u4 in
    pipe.run()
    pipe.clock.advance(500)  # less than a second later, an order stamped an hour earlier
    pipe.send([event("track", NOW - HOUR_MS, "o1", user_id="u4", event="Order Completed")])
    pid = pipe.profile_id("user_id:u4")

    found = history(pipe, "user_id:u4")
    assert intervals(found["recorded"]) == [("no_order", NOW, NOW + 500)]
    assert_recorded_intervals_are_ordered(found)
    assert intervals(found["valid"]) == [("no_order", NOW - 2 * HOUR_MS, NOW - HOUR_MS)]
    assert members(pipe, "no_order", NOW - 90 * 60_000) == [pid]
    assert members(pipe, "no_order", NOW - 90 * 60_000, recorded=True) == []
    assert members(pipe, "no_order", NOW) == [] == preview(pipe, rule, NOW)


def test_a_backfilled_profile_is_dormant_only_after_its_last_event(pipe: Pipeline) -> None:
    rule = "not did any event in last 14 days"
    pipe.segment("dormant", rule)
    last = NOW - 16 * DAY_MS + HOUR_MS
    days = [NOW - d * DAY_MS + HOUR_MS for d in range(30, 16, -2)] + [last]
    for n, ts in enumerate(days):  # an import of old history, a day's events at a time
        pipe.send([event("page", ts, f"p{n}", user_id="u5", name="Home")])
    pid = pipe.profile_id("user_id:u5")

    sizes = pipe.get("/api/v1/segments/dormant/sizes?days=30")
    assert sizes["time"] == "valid"
    assert [s["size"] for s in sizes["sizes"]] == [0] * 29 + [1, 1]  # in from 2 days ago
    assert (
        members(pipe, "dormant", NOW - 20 * DAY_MS) == [] == preview(pipe, rule, NOW - 20 * DAY_MS)
    )
    [(segment, entered, exited)] = intervals(history(pipe, "user_id:u5")["valid"])
    assert segment == "dormant" and exited is None
    assert last + 14 * DAY_MS <= entered <= last + 14 * DAY_MS + 1
    assert all(ts < entered for ts in days)  # never dormant on a day it had events
    assert members(pipe, "dormant", NOW) == [pid]


def test_a_change_is_valid_from_its_event_or_timer_and_recorded_when_committed(
    pipe: Pipeline,
) -> None:
    pipe.segment("recent", 'did "Product Viewed" in last 1 hour')
    viewed = NOW - 10 * 60_000
    pipe.send([event("track", viewed, "v1", user_id="u6", event="Product Viewed")])
    pipe.clock.set(NOW + 2 * HOUR_MS)  # the window ran out at viewed + 1 h; the timer fires late
    pipe.run()
    changes = [c for _, c in pipe.processor.change_feed().read(0) if hasattr(c, "segment")]
    assert [(c.kind, c.at_ms, c.recorded_at_ms) for c in changes] == [
        ("entered", viewed, NOW),
        ("exited", NOW + 2 * HOUR_MS, NOW + 2 * HOUR_MS),  # what the processor knew: by now
    ]
    # the exact valid time comes from the rules over the events (a replay in event time)
    found = history(pipe, "user_id:u6")
    assert intervals(found["valid"]) == [("recent", viewed, viewed + HOUR_MS)]
    assert intervals(found["recorded"]) == [("recent", NOW, NOW + 2 * HOUR_MS)]


def test_a_change_is_never_recorded_before_the_profiles_previous_one() -> None:
    profile = Profile(profile_id="p", created_ms=0, recorded_ms=NOW)
    batch = Batch(MemoryStateStore().begin_global(), now_ms=NOW - 60_000)  # a clock stepped back
    batch.change_membership(profile, "s", "entered", NOW - HOUR_MS)
    [change] = batch.changes
    assert (change.at_ms, change.recorded_at_ms, profile.recorded_ms) == (NOW - HOUR_MS, NOW, NOW)


RULES = {
    "viewer": 'did "Product Viewed" at least 3 times',
    "spender": 'sum(revenue of "Order Completed" in last 30 days) >= 100',
    "quiet": "not did any event in last 7 days",
    "abandoned": 'did "Product Added" then not "Order Completed" within 1 hour',
    "browsing": 'did "Product Viewed" in last 2 days',
    "viewer_not_buying": 'in segment "viewer" and not did "Order Completed" in last 3 days',
}


def in_replay(held: dict[str, Any], segment: str, at: int) -> list[str]:
    """The profiles whose replayed intervals hold ``segment`` at ``at``."""
    return sorted(
        pid for pid, found in held.items()
        if any(i.segment == segment and i.entered_at_ms <= at
               and (i.exited_at_ms is None or at < i.exited_at_ms) for i in found)
    )  # fmt: skip


@pytest.mark.parametrize("seed", [1])
def test_the_valid_history_agrees_with_the_sql_at_every_instant(pipe: Pipeline, seed: int) -> None:
    rng = random.Random(seed)
    for name, rule in RULES.items():
        pipe.segment(name, rule)
    names = ["Product Viewed", "Product Added", "Order Completed"]
    events = [
        event("track", NOW - rng.randrange(40 * DAY_MS), f"e{n}", user_id=f"u{rng.randrange(4)}",
              event=rng.choice(names), properties={"revenue": rng.randrange(80)})
        for n in range(60)
    ]  # fmt: skip
    rng.shuffle(events)  # arrival order is not event order
    for start in range(0, len(events), 15):
        pipe.send(events[start : start + 15])
    program = pipe.service.program()
    profiles = {u: pipe.reader.lookup("user_id", u) for u in (f"u{i}" for i in range(4))}
    held = {
        profile.profile_id: valid_history(
            pipe.reader.reader, pipe.log, program, profile, NOW
        ).intervals
        for profile in profiles.values()
        if profile is not None
    }
    instants = sorted(NOW - rng.randrange(42 * DAY_MS) for _ in range(12))
    replayed = {name: [in_replay(held, name, at) for at in instants] for name in RULES}
    for name in RULES:
        for at, by_replay in zip(instants, replayed[name], strict=True):
            assert pipe.service.members_at(name, at) == by_replay, (name, at)
    # the sizes on the time grid (one query for every instant) count the same members
    by_grid = pipe.service.sizes(list(RULES), instants)
    assert by_grid == {name: [len(m) for m in replayed[name]] for name in RULES}


def test_the_size_chart_is_the_sql_at_each_of_its_instants(pipe: Pipeline) -> None:
    rng = random.Random(3)
    for name, rule in RULES.items():
        pipe.segment(name, rule)
    names = ["Product Viewed", "Product Added", "Order Completed"]
    pipe.send([
        event("track", NOW - rng.randrange(35 * DAY_MS), f"e{n}", user_id=f"u{rng.randrange(5)}",
              event=rng.choice(names), properties={"revenue": rng.randrange(80)})
        for n in range(40)
    ])  # fmt: skip
    for name in ("abandoned", "viewer_not_buying"):
        chart = pipe.get(f"/api/v1/segments/{name}/sizes?days=30")["sizes"]
        instants = [s["at_ms"] for s in chart]
        one_by_one = pipe.service.sizes_per_instant([name], instants)[name]
        assert [s["size"] for s in chart] == one_by_one, name
    assert pipe.service.sizes(["viewer"], []) == {"viewer": []}


def test_a_bad_time_option_is_refused_with_the_field(pipe: Pipeline) -> None:
    pipe.segment("recent", 'did "Product Viewed" in last 1 hour')
    for path in ("members?at_ms=5&as_recorded=maybe", "sizes?as_recorded=2"):
        found = httpx.get(f"{pipe.base}/api/v1/segments/recent/{path}")
        assert found.status_code == 400, found.text
        assert found.json()["error"]["details"]["field"] == "as_recorded"
