"""Keyed sliding-window counts: segflow's incremental evaluator vs the same counts in Bytewax.

The issue's comparison (b): a Bytewax dataflow doing the same keyed sliding-window counts.
Both sides read the same seeded e-commerce stream (``benchmarks.rules.stream``), keyed by
profile, and after every event emit the profile's memberships of the same five count rules
("at least N matching events in the last W"), exact at the event's time:

- segflow: the evaluator the processor runs (the compiled rule kernel when it is built;
  ``--python``: the pure-Python ``SegmentProgram``), ``on_event`` per event, the state bytes
  kept per profile, as the processor does (identity and the state store are not included, as
  in ``benchmarks.rules``).
- Bytewax (``benchmarks/baselines/bytewax_windows.py``): ``key_on`` + ``stateful_map`` with, per
  profile and rule, the matching timestamps in a sorted list trimmed to the window — what a
  competent Bytewax user writes for an exact, per-event sliding count (its windowing operators
  emit per fixed window at close, which is a different answer: see the baseline's docstring).

The two outputs are compared (they must be equal) before anything is timed. Rounds are
interleaved after a warm-up; the ratio is Bytewax's time over segflow's.

Run: ``python -m benchmarks.windows [--rounds 5] [--events 50000] [--profiles 2000]``
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks.baselines.bytewax_windows import COUNT_RULES, run_bytewax
from benchmarks.common import commit, evaluator, machine, median
from benchmarks.rules import stream
from segflow.rules import StaticProfile, compile_segments
from segflow.rules.incremental.kernel import compile_kernel
from segflow.spec.events import Event

Output = list[tuple[str, frozenset[str]]]


def segflow_rules() -> dict[str, str]:
    """The baseline's count rules in the segment language."""
    out = {}
    for name, (event, n, window_ms) in COUNT_RULES.items():
        selector = "any event" if event is None else f'"{event}"'
        out[name] = f"did {selector} at least {n} times in last {window_ms // 60_000} minutes"
    return out


PYTHON = False  # --python: the pure-Python evaluator instead of the kernel


def run_segflow(events: list[tuple[str, Event]]) -> tuple[float, Output]:
    program: Any = compile_segments(segflow_rules())
    if not PYTHON:
        program = compile_kernel(program)
    views: dict[str, StaticProfile] = {}
    states: dict[str, bytes | None] = {}
    out: Output = []
    start = time.perf_counter()
    for pid, e in events:
        view = views.get(pid) or views.setdefault(pid, StaticProfile(pid))
        res = program.on_event(view, states.get(pid), e, e.timestamp_ms)
        states[pid] = res.state
        out.append((pid, res.members))
    return time.perf_counter() - start, out


def by_profile(output: Output) -> dict[str, list[frozenset[str]]]:
    grouped: dict[str, list[frozenset[str]]] = {}
    for pid, members in output:
        grouped.setdefault(pid, []).append(members)
    return grouped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--profiles", type=int, default=2_000)
    ap.add_argument("--python", action="store_true", help="segflow's pure-Python evaluator")
    args = ap.parse_args()
    global PYTHON
    PYTHON = args.python
    events = stream(args.events, args.profiles)
    _, ours = run_segflow(events)
    _, theirs = run_bytewax(events)
    if by_profile(ours) != by_profile(theirs):  # Bytewax keeps the order within a key only
        raise SystemExit("segflow and the Bytewax dataflow disagree")
    seg, base, ratios = [], [], []
    for _ in range(args.rounds):
        t_ours, _ = run_segflow(events)
        t_base, _ = run_bytewax(events)
        seg.append(len(events) / t_ours)
        base.append(len(events) / t_base)
        ratios.append(t_base / t_ours)
    print(f"# windows benchmark — {datetime.now(UTC):%Y-%m-%d}, commit {commit()}, {machine()}")
    print(evaluator() if not PYTHON else "# evaluator: pure-Python evaluator (--python)")
    print(f"# {len(events)} events, {args.profiles} profiles, {len(COUNT_RULES)} count rules\n")
    print("| segflow events/s | Bytewax events/s | ratio | target |")
    print("| --- | --- | --- | --- |")
    print(f"| {median(seg):,.0f} | {median(base):,.0f} | {median(ratios):.2f}x | >= 2x |")


if __name__ == "__main__":
    main()
