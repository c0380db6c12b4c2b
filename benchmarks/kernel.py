"""The compiled rule kernel against the Python evaluator: events/s, one core, same answers.

The seeded e-commerce stream of ``benchmarks.rules`` (``--events`` events over ``--profiles``
profiles) goes through both evaluators of ``TEN_RULES`` and ``hundred_rules()``:

- **on_event**: event by event, the state bytes kept per profile and handed back on the next
  call, as the processor does (the state round trip is in the figure);
- **on_events**: micro-batches of ``--batch`` consecutive events, each profile's events of a
  batch in one call at the batch's last event time (the processor's ``settle``).

Rounds are interleaved (Python, kernel, Python batches, kernel batches) and medians reported;
the process is pinned to one core. Both evaluators' final members are checked equal. The
kernel's time per event is split by stage (``KernelProgram._timed``): load (parse the state),
record (match, extract, insert, compact), flush (write the touched sections), evaluate
(rules, computed traits), write (the state bytes, members, result); "rest" is the median
on_event time per event minus those stages: the Python call, the benchmark's own loop (about
0.6 µs of dict lookups and stores per event on the machine of BENCHMARKS.md) and the clock
reads of the timed pass.

Run: ``python -m benchmarks.kernel [--rounds 5] [--events 6000]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import commit, machine, median
from benchmarks.rules import TEN_RULES, hundred_rules, stream
from segflow.rules import StaticProfile, compile_segments
from segflow.rules.incremental.kernel import AVAILABLE, KernelProgram
from segflow.spec.events import Event

Stream = list[tuple[str, Event]]
STAGES = ("load", "record", "flush", "evaluate", "write")


def per_event(evaluator: Any, events: Stream) -> tuple[float, dict[str, Any]]:
    views: dict[str, StaticProfile] = {}
    states: dict[str, bytes | None] = {}
    last: dict[str, Any] = {}
    start = time.perf_counter()
    for pid, e in events:
        view = views.get(pid) or views.setdefault(pid, StaticProfile(pid))
        res = evaluator.on_event(view, states.get(pid), e, e.timestamp_ms)
        states[pid] = res.state
        last[pid] = res.members
    return time.perf_counter() - start, last


def state_bytes(evaluator: Any, events: Stream) -> int:
    """Mean bytes of state per profile after the stream, event by event."""
    views: dict[str, StaticProfile] = {}
    states: dict[str, bytes | None] = {}
    for pid, e in events:
        view = views.get(pid) or views.setdefault(pid, StaticProfile(pid))
        states[pid] = evaluator.on_event(view, states.get(pid), e, e.timestamp_ms).state
    return sum(len(s or b"") for s in states.values()) // max(1, len(states))


def batches(events: Stream, size: int) -> list[tuple[int, dict[str, list[Event]]]]:
    out = []
    for i in range(0, len(events), size):
        chunk = events[i : i + size]
        by_profile: dict[str, list[Event]] = {}
        for pid, e in chunk:
            by_profile.setdefault(pid, []).append(e)
        out.append((chunk[-1][1].timestamp_ms, by_profile))
    return out


def batched(
    evaluator: Any, work: list[tuple[int, dict[str, list[Event]]]]
) -> tuple[float, dict[str, Any]]:
    views: dict[str, StaticProfile] = {}
    states: dict[str, bytes | None] = {}
    last: dict[str, Any] = {}
    start = time.perf_counter()
    for now, by_profile in work:
        for pid, evs in by_profile.items():
            view = views.get(pid) or views.setdefault(pid, StaticProfile(pid))
            res = evaluator.on_events(view, states.get(pid), evs, now)
            states[pid] = res.state
            last[pid] = res.members
    return time.perf_counter() - start, last


def stages(kernel: KernelProgram, events: Stream) -> tuple[list[float], int]:
    """Mean ns per event of each stage, and bytes of state per profile."""
    views: dict[str, StaticProfile] = {}
    states: dict[str, bytes | None] = {}
    sums = [0] * len(STAGES)
    for pid, e in events:
        view = views.get(pid) or views.setdefault(pid, StaticProfile(pid))
        res, ns = kernel._timed(view, states.get(pid), (e,), e.timestamp_ms)
        states[pid] = res.state
        sums = [a + b for a, b in zip(sums, ns, strict=True)]
    size = sum(len(s or b"") for s in states.values()) // max(1, len(states))
    return [s / len(events) for s in sums], size


def rate(
    fn: Callable[[Any, Any], tuple[float, Any]], evaluator: Any, work: Any
) -> tuple[float, Any]:
    """Events per second of ``fn(evaluator, work)``, and its last members per profile."""
    seconds, last = fn(evaluator, work)
    n = len(work) if fn is per_event else sum(len(e) for _, b in work for e in b.values())
    return n / seconds, last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--profiles", type=int, default=500)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--cpu", type=int, default=0, help="the core to pin the process to")
    args = ap.parse_args()
    if not AVAILABLE:
        raise SystemExit("the rule kernel is not built (or SEGFLOW_KERNEL=0)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    events = stream(args.events, args.profiles)
    work = batches(events, args.batch)
    print(f"# rule kernel benchmark — {datetime.now(UTC):%Y-%m-%d}, commit {commit()}, {machine()}")
    print(
        f"# {len(events)} events, {args.profiles} profiles, batches of {args.batch} events, "
        f"{args.rounds} interleaved rounds (medians), pinned to one core\n"
    )
    print(
        "| rules | Python on_event ev/s | kernel on_event ev/s | ratio | "
        "Python on_events ev/s | kernel on_events ev/s | ratio | kernel µs/event |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    splits = []
    for rules in (TEN_RULES, hundred_rules()):
        python = compile_segments(rules)
        kernel = KernelProgram(python)
        per_event(kernel, events[:500])  # warm-up
        runs: dict[str, list[float]] = {"py": [], "k": [], "pyb": [], "kb": []}
        for _ in range(args.rounds):
            py, py_members = rate(per_event, python, events)
            k, k_members = rate(per_event, kernel, events)
            pyb, pyb_members = rate(batched, python, work)
            kb, kb_members = rate(batched, kernel, work)
            assert py_members == k_members and pyb_members == kb_members, "the answers differ"
            for key, value in (("py", py), ("k", k), ("pyb", pyb), ("kb", kb)):
                runs[key].append(value)
        m = {key: median(values) for key, values in runs.items()}
        print(
            f"| {len(rules)} | {m['py']:,.0f} | {m['k']:,.0f} | {m['k'] / m['py']:.0f}x | "
            f"{m['pyb']:,.0f} | {m['kb']:,.0f} | {m['kb'] / m['pyb']:.0f}x | {1e6 / m['k']:.2f} |"
        )
        splits.append(
            (len(rules), 1e9 / m["k"], *stages(kernel, events), state_bytes(python, events))
        )
    print("\nkernel on_event, ns per event by stage (one timed pass):\n")
    print(
        f"| rules | {' | '.join(STAGES)} | rest | total | "
        "state bytes per profile: kernel | Python |"
    )
    print("| --- |" + " --- |" * (len(STAGES) + 4))
    for n, total, parts, size, py_size in splits:
        rest = max(0.0, total - sum(parts))
        cells = " | ".join(f"{p:,.0f}" for p in parts)
        print(f"| {n} | {cells} | {rest:,.0f} | {total:,.0f} | {size:,} | {py_size:,} |")


if __name__ == "__main__":
    main()
