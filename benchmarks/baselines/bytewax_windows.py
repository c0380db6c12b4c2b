"""Baseline: keyed, exact sliding-window counts written as a Bytewax dataflow.

``key_on`` the profile, then ``stateful_map`` holding, per rule, the sorted timestamps of the
matching events still inside the rule's window; after each event it emits the rules whose count
reaches N. Bytewax's windowing operators (``SlidingWindower`` + ``count_window``) answer a
different question — a count per fixed window emitted when the window closes, an event
belonging to length/offset overlapping windows — so they would neither match segflow's per-event
answer nor be cheaper; this is the dataflow a Bytewax user writes for "N in the last W, now".
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from segflow.spec.events import Event

MIN = 60_000
# name -> (track event name or None for any event, at least N, window ms)
COUNT_RULES: dict[str, tuple[str | None, int, int]] = {
    "viewed_3_in_hour": ("Product Viewed", 3, 60 * MIN),
    "added_2_in_day": ("Product Added", 2, 24 * 60 * MIN),
    "ordered_2_in_week": ("Order Completed", 2, 7 * 24 * 60 * MIN),
    "busy_hour": (None, 5, 60 * MIN),
    "active_week": (None, 20, 7 * 24 * 60 * MIN),
}


def _matches(event: Event, name: str | None) -> bool:
    return name is None or (event.type == "track" and event.event == name)


def _count(state: dict[str, list[int]] | None, event: Event) -> tuple[Any, frozenset[str]]:
    state = state if state is not None else {name: [] for name in COUNT_RULES}
    now = event.timestamp_ms
    members = []
    for name, (wanted, n, window_ms) in COUNT_RULES.items():
        times = state[name]
        if _matches(event, wanted):
            bisect.insort(times, now)
        del times[: bisect.bisect_right(times, now - window_ms)]
        if bisect.bisect_right(times, now) >= n:
            members.append(name)
    return state, frozenset(members)


def run_bytewax(events: list[tuple[str, Event]]) -> tuple[float, list[tuple[str, frozenset[str]]]]:
    """Run the dataflow over ``events`` ((profile, event) pairs); returns (seconds, output)."""
    out: list[tuple[str, frozenset[str]]] = []
    flow = Dataflow("sliding_counts")
    src = op.input("events", flow, TestingSource(events, batch_size=1000))
    keyed = op.key_on("profile", src, lambda pair: pair[0])
    values = op.map_value("event", keyed, lambda pair: pair[1])
    counted = op.stateful_map("counts", values, _count)
    op.output("out", counted, TestingSink(out))
    start = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - start, out
