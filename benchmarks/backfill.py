"""Backfill: a segment created over an existing history, until every profile's state has it.

The issue's target: a new or changed rule over 10M events in under a minute. A seeded stream
(``benchmarks.rules.stream``: views, adds, orders, pages, identifies over ~40 days) is appended
to a real log (``log.sqlite``) and processed with the rules benchmark's ten segments but one;
then the eleventh segment (``--rule``) is added and the processor rebuilds every profile from
its history (``Processor.backfill_step(limit=--limit)`` until complete: a step's timelines in
one range scan, its events taken from one sequential pass over the log held in memory across
steps — ``segflow.stream.replay.LogWindow``, budget ``--window-mb`` — decoded as ``RuleEvent``
— the rules' fields only — and one evaluation per profile on the compiled kernel).
Reported: the backfill's events/s (events in the log / seconds), its per-profile cost, and per
round the seconds of each stage.

Baseline, the same run: the new segment's members by SQL over the same events in DuckDB
(``segflow.rules.sql.compile_members``, the table already loaded, the query alone timed) —
the answer a warehouse gives without building any state. The two member sets are compared
(they must be equal).

Each round's backfill runs in a fresh process (``multiprocessing``, spawned) that holds what
a user's processor holds and nothing else: the benchmark's own copy of the stream (~0.9 GB a
million events) is not in it, so the window's default budget (a quarter of the available memory) is
the one ``segflow serve`` gets. The stream is generated only to prepare the input and the
warehouse, and freed before the first round.

Run: ``python -m benchmarks.backfill [--events 1000000] [--profiles 100000] [--rounds 3]``
``--data DIR`` keeps the prepared log, state and warehouse in ``DIR`` and reuses them when
present (the same events and profiles; the stream is then not generated at all): two versions
of segflow can then be timed in turns on one input. Each round prints the seconds per stage of
the backfill (``Processor.backfill_stages``; ``window``: the passes over the log), the backfill
process's CPU seconds (RocksDB's background threads included), the collector's seconds within
the stages (``gc``), the window's budget as the first step sees it and the peak RSS. ``--compare`` runs each round without
the window as well (``--window-mb 0``: each step reads its events at their positions, one query
per partition), alternated with it on the same input, and prints the per-round ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from benchmarks.common import commit, evaluator, machine, median
from benchmarks.rules import TEN_RULES, stream
from segflow.clock import ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.rules import compile_segments
from segflow.rules.sql.compiler import compile_members
from segflow.spec import Event
from segflow.stream import Processor, ProfileReader, replay
from segflow.stream.processor import ProcessorSettings, tune_gc
from segflow.stream.state.rocksdb import RocksStateStore

WAREHOUSE = "wh.duckdb"  # the baseline's events, in the data directory
NEW_RULE = 'did "Product Viewed" where category = "shoes" at least 3 times in last 30 days'


def prepare(events: list, work: Path) -> tuple[Path, int]:
    """``log.sqlite`` with the events and ``state/`` processed with the ten rules but one."""
    log = SqliteEventLog(work / "log.sqlite", partitions=8)
    for start in range(0, len(events), 20_000):
        log.append(events[start : start + 20_000])
    end = max(e.timestamp_ms for e in events)
    old = {k: v for k, v in TEN_RULES.items() if k != "shoe_explorers"}
    store = RocksStateStore(work / "state")
    proc = Processor(log, store, compile_segments(old), ManualClock(end))
    while proc.run_once(2_000) > 0:
        pass
    while proc.backfilling():
        proc.run_once()
    store.close()
    log.close()
    return work, end


def _prepared(events: Callable[[], list[Event]], work: Path, tag: str) -> tuple[Path, int]:
    """:func:`prepare` and :func:`warehouse` into ``work``, or the input already prepared
    there for ``tag`` (``events``: the stream, generated only when something is missing)."""
    marker = work / "prepared.txt"
    if marker.exists() and marker.read_text().split()[0] == tag:
        end = int(marker.read_text().split()[1])
        if not (work / WAREHOUSE).exists():
            warehouse(events(), work / WAREHOUSE).close()
        return work, end
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stream_ = events()
    _, end = prepare(stream_, work)
    warehouse(stream_, work / WAREHOUSE).close()
    marker.write_text(f"{tag} {end}")
    return work, end


def backfill(
    work: Path, end: int, limit: int = 2_000, window_bytes: int | None = None
) -> tuple[float, int, set[str], dict[str, float]]:
    """Seconds to backfill the new rule, profiles rebuilt, the new segment's members, and the
    seconds per stage (``Processor.backfill_stages``, and ``cpu``: the process's CPU seconds
    over the backfill, less sensitive than the wall clock to a shared machine's load);
    ``window_bytes``: the log window's
    budget (0: each step reads its events at their positions, as before the window; None:
    ``replay.window_budget()``)."""
    copy = work.parent / f"{work.name}-run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns(WAREHOUSE))
    log = SqliteEventLog(copy / "log.sqlite", partitions=8)
    store = RocksStateStore(copy / "state")
    rules = {**{k: v for k, v in TEN_RULES.items() if k != "shoe_explorers"}, "new": NEW_RULE}
    proc = Processor(log, store, compile_segments(rules), ManualClock(end), ProcessorSettings())
    rebuilt = 0
    budget, replay.WINDOW_BYTES = replay.WINDOW_BYTES, window_bytes
    collecting = _Collections()
    gc.callbacks.append(collecting)
    window_gb = replay.window_budget() / (1 << 30)  # the budget as the first step sees it
    try:
        started, cpu = time.perf_counter(), time.process_time()
        while (done := proc.backfill_step(limit=limit)) > 0:
            rebuilt += done
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        replay.WINDOW_BYTES = budget
        gc.callbacks.remove(collecting)
    reader = ProfileReader(store.reader(), log)
    members = set()  # each member by its anonymous id (the stream's one key per person)
    for pid in reader.members("new"):
        found = reader.identities(pid)
        members.update(v for t, v in found if t == "anonymous_id")
    stages = dict(getattr(proc, "backfill_stages", {}))
    stages["cpu"] = cpu  # the process's CPU seconds (the others: wall clock)
    stages["gc"] = collecting.seconds  # the cyclic collector's, within the stages
    stages["budget GB"] = window_gb
    stages["peak GB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    store.close()
    log.close()
    shutil.rmtree(copy, ignore_errors=True)
    return seconds, rebuilt, members, stages


class _Collections:
    """A ``gc.callbacks`` entry that adds up the seconds of the collector's passes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def fresh_backfill(
    work: Path, end: int, limit: int = 2_000, window_bytes: int | None = None
) -> tuple[float, int, set[str], dict[str, float]]:
    """:func:`backfill` in a new process (spawned: nothing of this one's memory), with the
    collector tuned as the running processor tunes it."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_tuned_backfill, (work, end, limit, window_bytes))


def _tuned_backfill(
    work: Path, end: int, limit: int, window_bytes: int | None
) -> tuple[float, int, set[str], dict[str, float]]:
    tune_gc(ProcessorSettings().gc_threshold)  # as the running processor does
    return backfill(work, end, limit, window_bytes)


def warehouse(events: list, path: Path) -> duckdb.DuckDBPyConnection:
    """The events with their profile (the stream's own key: one person per profile) in DuckDB."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE profile_events (profile_id VARCHAR, message_id VARCHAR, source_id VARCHAR,"
        " type VARCHAR, event VARCHAR, name VARCHAR, timestamp_ms BIGINT, user_id VARCHAR,"
        " anonymous_id VARCHAR, properties JSON, traits JSON, context JSON)"
    )
    con.execute("CREATE TABLE profile_scores (profile_id VARCHAR, model VARCHAR, score DOUBLE)")
    con.execute(
        "CREATE TABLE profile_clusters (profile_id VARCHAR, model VARCHAR, cluster VARCHAR)"
    )
    table = pa.table(
        {
            "profile_id": [e.anonymous_id for e in events],
            "message_id": [e.message_id for e in events],
            "source_id": [e.source_id for e in events],
            "type": [e.type for e in events],
            "event": [e.event for e in events],
            "name": [e.name for e in events],
            "timestamp_ms": [e.timestamp_ms for e in events],
            "user_id": [e.user_id for e in events],
            "anonymous_id": [e.anonymous_id for e in events],
            "properties": [json.dumps(e.properties) for e in events],
            "traits": [json.dumps(e.traits) for e in events],
            "context": ["{}"] * len(events),
        }
    )
    con.register("loaded", table)
    con.execute("INSERT INTO profile_events SELECT * FROM loaded")
    con.unregister("loaded")
    return con


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--profiles", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=2_000, help="profiles per backfill step")
    ap.add_argument("--data", type=Path, default=None, help="keep/reuse the prepared input here")
    ap.add_argument(
        "--window-mb",
        type=int,
        default=None,
        help="the log window's budget (MB; 0: point reads per step; default: replay.window_budget)",
    )
    ap.add_argument(
        "--compare",
        action="store_true",
        help="each round also without the window (point reads), alternated: the ratio",
    )
    args = ap.parse_args()
    variants: list[tuple[str, int | None]] = [
        ("window", None if args.window_mb is None else args.window_mb << 20)
    ]
    if args.compare:
        variants.insert(0, ("point reads", 0))
    tmp = Path(tempfile.mkdtemp(prefix="segflow-bench-backfill-"))
    before = gc.get_threshold()
    tune_gc(ProcessorSettings().gc_threshold)  # preparing: as the running processor does
    try:
        t0 = time.perf_counter()
        tag = f"{args.events}/{args.profiles}"
        work, end = _prepared(
            lambda: _events(args.events, args.profiles), args.data or tmp / "data", tag
        )
        gc.collect()  # the stream, when it was generated here
        print(f"prepared {args.events:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
        sql = compile_members(NEW_RULE, at_ms=end)
        ours, theirs, rebuilt = [], [], 0
        timed: dict[str, list[float]] = {name: [] for name, _ in variants}
        for rnd in range(args.rounds):
            for name, budget in variants:
                seconds, rebuilt, members, stages = fresh_backfill(work, end, args.limit, budget)
                con = duckdb.connect(str(work / WAREHOUSE), read_only=True)
                con.execute("SET TimeZone = 'UTC'")
                q0 = time.perf_counter()
                by_sql = {r[0] for r in con.execute(sql).fetchall()}
                q = time.perf_counter() - q0
                con.close()
                if members != by_sql:
                    raise SystemExit(
                        f"backfill {len(members)} members, SQL {len(by_sql)}: not equal"
                    )
                timed[name].append(seconds)
                theirs.append(q)
                split = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
                print(
                    f"round {rnd + 1} ({name}): backfill {seconds:.1f} s ({rebuilt:,} profiles;"
                    f" {split}), SQL {q:.2f} s",
                    flush=True,
                )
        ours = timed["window"]
        if args.compare:
            ratios = [a / b for a, b in zip(timed["point reads"], ours, strict=True)]
            print(f"point reads / window, per round: {', '.join(f'{r:.2f}x' for r in ratios)}")
    finally:
        gc.set_threshold(*before)
        shutil.rmtree(tmp, ignore_errors=True)
    if not ours:  # --rounds 0: only the input prepared (--data)
        return
    s = median(ours)
    print(f"\n# backfill — {datetime.now(UTC):%Y-%m-%d}, commit {commit()}, {machine()}")
    print(evaluator())
    print(f"# {args.events:,} events, {rebuilt:,} profiles, 9 rules then one more\n")
    print("| measure | segflow | baseline (SQL members only) | target |")
    print("| --- | --- | --- | --- |")
    print(
        f"| backfill of one new rule: seconds / events/s | {s:.1f} s / {args.events / s:,.0f} | {median(theirs):.2f} s | 10M events <= 60 s |"
    )
    print(f"| per profile rebuilt | {s / max(rebuilt, 1) * 1e6:,.0f} µs | - | - |")


def _events(n_events: int, n_profiles: int) -> list[Event]:
    """The seeded stream's events (``benchmarks.rules.stream``)."""
    return [e for _, e in stream(n_events, n_profiles)]


if __name__ == "__main__":
    main()
