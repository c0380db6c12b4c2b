"""Membership history in valid time: what a size chart and a profile's history cost.

A seeded stream (``benchmarks.rules.stream``: views, adds, orders, pages, identifies over ~40
days) goes through the real log, the processor (the rules benchmark's ten segments) and the
DuckDB warehouse loader. Then, interleaved over ``--rounds`` rounds:

- segflow: ``SegmentService.sizes`` for one segment at the 31 instants of a 30-day chart, in
  valid time (the compiler's time grid: one query for the 31 instants);
- before: the same chart by ``SegmentService.sizes_per_instant`` (the rule's SQL at each
  instant: 31 queries), what ``sizes`` ran before the grid (#17);
- baseline: the same chart from the recorded intervals (``size_history``: one query over the
  warehouse's ``memberships``, what the chart read before #17 — fast, but in the wrong time);
- the console's segment list: every segment's chart (``sizes`` of all ten), grid and per instant.

And a profile's valid history (``segflow.stream.history.valid_history``: its events read back
from the log and replayed in event time with its timers) for a sample of profiles: p50 and
p99 per profile, with their event counts.

Run: ``python -m benchmarks.history [--events 100000] [--profiles 10000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import commit, machine, median
from benchmarks.rules import TEN_RULES, stream
from segflow.clock import ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.segments.service import SegmentService
from segflow.segments.sizes import days_back, size_history
from segflow.segments.store import DefinitionStore
from segflow.stream import Processor, ProfileReader, SqliteStateStore, timeline
from segflow.stream.history import valid_history
from segflow.warehouse.connection import connect
from segflow.warehouse.loader import WarehouseLoader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--profiles", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--segment", default="dormant")
    ap.add_argument("--sample", type=int, default=200, help="profiles whose history is replayed")
    ap.add_argument("--list", action="store_true", help="also time the ten segments' charts")
    args = ap.parse_args()
    events = [e for _, e in stream(args.events, args.profiles)]
    end = max(e.timestamp_ms for e in events)
    work = Path(tempfile.mkdtemp(prefix="segflow-bench-history-"))
    clock = ManualClock(end)
    log = SqliteEventLog(work / "log.sqlite", partitions=4)
    for start in range(0, len(events), 20_000):
        log.append(events[start : start + 20_000])
    store = SqliteStateStore(work / "state.sqlite")
    service = SegmentService(
        DefinitionStore(work / "catalog.sqlite"),
        warehouse=lambda: connect(work / "warehouse.duckdb"),
        clock=clock,
    )
    for name, rule in TEN_RULES.items():
        service.put_segment(name, rule)
    proc = Processor(log, store, service.program(), clock)
    t0 = time.perf_counter()
    while proc.run_once(5_000) > 0:
        pass
    loader = WarehouseLoader(log, proc.change_feed(), work / "warehouse.duckdb", clock)
    loader.run_until_idle()
    print(f"prepared {len(events):,} events in {time.perf_counter() - t0:.0f} s", flush=True)

    at = days_back(end, 30)
    ours, theirs, ratios, before, speedups = [], [], [], [], []
    everyone, everyone_before, list_speedups = [], [], []
    names = sorted(TEN_RULES)
    service.sizes([args.segment], at)  # warm-up
    service.sizes_per_instant([args.segment], at)
    for _ in range(args.rounds):
        t = time.perf_counter()
        valid = service.sizes([args.segment], at)[args.segment]
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        one_by_one = service.sizes_per_instant([args.segment], at)[args.segment]
        before.append(time.perf_counter() - t)
        assert one_by_one == valid, (one_by_one, valid)
        speedups.append(before[-1] / ours[-1])
        if args.list:
            t = time.perf_counter()
            service.sizes(names, at)
            everyone.append(time.perf_counter() - t)
            t = time.perf_counter()
            service.sizes_per_instant(names, at)
            everyone_before.append(time.perf_counter() - t)
            list_speedups.append(everyone_before[-1] / everyone[-1])
        con = connect(work / "warehouse.duckdb")
        t = time.perf_counter()
        recorded = size_history(con, [args.segment], at)[args.segment]
        theirs.append(time.perf_counter() - t)
        con.close()
        ratios.append(ours[-1] / theirs[-1])
    print(f"valid sizes   {valid}")
    print(f"recorded sizes {recorded}")

    reader = ProfileReader(store.reader(), log)
    program = service.program()
    rng = random.Random(7)
    pids = sorted({f"a-p{int(args.profiles * rng.random() ** 2)}" for _ in range(args.sample)})
    replays: list[tuple[float, int]] = []
    for anon in pids:
        profile = reader.lookup("anonymous_id", anon)
        if profile is None:
            continue
        n = len(timeline.entries(reader.reader, profile))
        t = time.perf_counter()
        valid_history(reader.reader, log, program, profile, end)
        replays.append((time.perf_counter() - t, n))
    replays.sort()
    p50, p99 = replays[len(replays) // 2], replays[int(len(replays) * 0.99)]
    loader.stop()
    reader.close()
    store.close()
    log.close()

    date = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"\n{date} {commit()} {machine()}")
    print(
        f"| {date} | {commit()} | {len(events):,} events, {args.profiles:,} profiles,"
        f" `{args.segment}` | {median(ours) * 1000:.0f} ms (grid: 1 SQL query) |"
        f" {median(theirs) * 1000:.1f} ms (interval query) | {median(ratios):.0f}x |"
        f" replay p50 {p50[0] * 1000:.1f} ms ({p50[1]} events), p99 {p99[0] * 1000:.1f} ms"
        f" ({p99[1]} events) |"
    )
    print(
        f"| {date} | {commit()} | {len(events):,} events, {args.profiles:,} profiles,"
        f" `{args.segment}`, 31 instants | grid {median(ours) * 1000:.0f} ms |"
        f" per instant {median(before) * 1000:.0f} ms | {median(speedups):.1f}x faster |"
    )
    if args.list:
        print(
            f"| {date} | {commit()} | {len(events):,} events, {args.profiles:,} profiles,"
            f" segment list (10 charts) | grid {median(everyone) * 1000:.0f} ms |"
            f" per instant {median(everyone_before) * 1000:.0f} ms |"
            f" {median(list_speedups):.1f}x faster |"
        )


if __name__ == "__main__":
    main()
