"""Segment rules: events/s through segflow's incremental evaluator vs re-running the rules as DuckDB SQL.

A seeded e-commerce stream (views, adds, orders with revenue, pages, identifies) over
``--profiles`` profiles is fed (a) event by event through ``SegmentProgram.on_event`` with the
state bytes kept per profile, as the processor does, and (b) to the baseline, which appends each
batch of ``--batch`` events (one second of traffic at that rate) to DuckDB and re-runs every
rule's SQL. Rounds are interleaved. Also reported: bytes of rule state per (profile, rule).

segflow's side is the evaluator the processor runs: the compiled rule kernel when it is built
(``--python``: the pure-Python ``SegmentProgram``).

Run: ``python -m benchmarks.rules [--rounds 5] [--events 6000] [--python]``
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks.baselines.duckdb_rules import run_batches
from benchmarks.common import commit, evaluator, machine, median
from segflow.rules import StaticProfile, compile_segments
from segflow.rules.incremental.kernel import compile_kernel
from segflow.spec.events import Event

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = 1_700_000_000_000
CATEGORIES = ["shoes", "hats", "bags", "shirts", "socks", "watches"]

TEN_RULES = {
    "viewed_3_in_hour": 'did "Product Viewed" at least 3 times in last 1 hour',
    "abandoned_cart": 'did "Product Added" then not "Order Completed" within 1 hour',
    "frequent_visitors": "did any event on at least 8 of last 30 days",
    "big_spenders": 'sum(revenue of "Order Completed" in last 90 days) >= 400 and avg(revenue of "Order Completed" in last 90 days) > 100',
    "dormant": "not did any event in last 14 days",
    "shoe_explorers": 'unique_count(category of "Product Viewed" in last 7 days) >= 3 and most_frequent(category of "Product Viewed" in last 7 days) = "shoes"',
    "viewed_added_no_order": 'did "Product Viewed" then "Product Added" within 30 minutes then not "Order Completed"',
    "pro": 'trait plan = "pro" and trait email exists',
    "new_prospect": 'is anonymous and first seen in last 1 day and did "Product Viewed" where category = "shoes" at least 2 times',
    "lapsed_buyers": 'did "Order Completed" between 60 and 30 days ago and not did "Order Completed" in last 30 days',
}


def hundred_rules() -> dict[str, str]:
    rules = dict(TEN_RULES)
    i = 0
    while len(rules) < 100:
        cat = CATEGORIES[i % len(CATEGORIES)]
        n, days = 2 + i % 4, 1 + i % 14
        templates = [
            f'did "Product Viewed" where category = "{cat}" at least {n} times in last {days} days',
            f'sum(revenue of "Order Completed" in last {days * 5} days) >= {50 * n}',
            f'did "Product Added" where category = "{cat}" then not "Order Completed" within {n} hours',
            f'did any event in last {days} days and not did "Order Completed" in last {days * 2} days',
        ]
        rules[f"r{i}"] = templates[i % len(templates)]
        i += 1
    return rules


def stream(n_events: int, n_profiles: int, seed: int = 7) -> list[tuple[str, Event]]:
    rng = random.Random(seed)
    out: list[tuple[str, Event]] = []
    ts = T0
    for i in range(n_events):
        ts += rng.randint(0, 40 * DAY // n_events * 2)
        pid = f"p{int(n_profiles * rng.random() ** 2)}"
        r = rng.random()
        common = dict(
            message_id=f"m{i}",
            source_id="web",
            timestamp_ms=ts,
            received_at_ms=ts,
            anonymous_id=f"a-{pid}",
        )
        cat = rng.choice(CATEGORIES)
        if r < 0.55:
            e = Event(
                type="track",
                event="Product Viewed",
                properties={"category": cat, "price": rng.randint(5, 200)},
                **common,
            )
        elif r < 0.7:
            e = Event(type="track", event="Product Added", properties={"category": cat}, **common)
        elif r < 0.76:
            e = Event(
                type="track",
                event="Order Completed",
                properties={"revenue": rng.randint(10, 400) / 4},
                user_id=f"u-{pid}",
                **common,
            )
        elif r < 0.95:
            e = Event(type="page", name=rng.choice(["Home", "Category", "Search"]), **common)
        else:
            traits = {"plan": rng.choice(["pro", "free"]), "email": f"{pid}@example.com"}
            e = Event(type="identify", traits=traits, user_id=f"u-{pid}", **common)
        out.append((pid, e))
    return out


PYTHON = False  # --python: the pure-Python evaluator instead of the kernel the processor runs


def run_segflow(
    rules: dict[str, str], events: list[tuple[str, Event]]
) -> tuple[float, dict[str, bytes | None]]:
    program: Any = compile_segments(rules)
    if not PYTHON:
        program = compile_kernel(program)
    views: dict[str, StaticProfile] = {}
    states: dict[str, bytes | None] = {}
    start = time.perf_counter()
    for pid, e in events:
        view = views.get(pid) or views.setdefault(pid, StaticProfile(pid))
        states[pid] = program.on_event(view, states.get(pid), e, e.timestamp_ms).state
    return time.perf_counter() - start, states


def run_baseline(rules: dict[str, str], events: list[tuple[str, Event]], batch: int) -> float:
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    start = time.perf_counter()
    run_batches(rules, batches)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--profiles", type=int, default=500)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--python", action="store_true", help="segflow's pure-Python evaluator")
    args = ap.parse_args()
    global PYTHON
    PYTHON = args.python
    events = stream(args.events, args.profiles)
    print(f"# rules benchmark — {datetime.now(UTC):%Y-%m-%d}, commit {commit()}, {machine()}")
    print(evaluator() if not PYTHON else "# evaluator: pure-Python evaluator (--python)")
    print(f"# {len(events)} events, {args.profiles} profiles, baseline batch {args.batch} events\n")
    print(
        "| rules | segflow events/s | DuckDB re-run events/s | ratio | state bytes per (profile, rule) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for rules in (TEN_RULES, hundred_rules()):
        run_segflow(rules, events[:500])  # warm-up
        ours, theirs, ratios = [], [], []
        states: dict[str, bytes | None] = {}
        for _ in range(args.rounds):
            t_ours, states = run_segflow(rules, events)
            t_base = run_baseline(rules, events, args.batch)
            ours.append(len(events) / t_ours)
            theirs.append(len(events) / t_base)
            ratios.append(t_base / t_ours)
        per = sum(len(s or b"") for s in states.values()) / (len(states) * len(rules))
        print(
            f"| {len(rules)} | {median(ours):,.0f} | {median(theirs):,.0f} | {median(ratios):.1f}x | {per:.1f} |"
        )


if __name__ == "__main__":
    main()
