"""Memory and disk at scale: 1M profiles x 100 rules, and the restart that follows.

    python -m benchmarks.footprint [--people 1000000] [--events 1300000] [--rules 100]

The issue's row: "1M profiles x 100 rules: RSS <= 4 GB; state bytes per profile and restart
time reported". The processor benchmark's seeded stream (``benchmarks.processor``: 70%
anonymous traffic, logins, server-side events, tickets; pre-decoded records, log reads not
measured) over ``--people`` people — enough events that nearly every person gets a profile —
is processed by one ``Processor`` on its default store (RocksDB, synced WAL) with the rules
benchmark's 100 segments on the compiled kernel, in a child process. Reported:

- the child's peak RSS (``ru_maxrss``) and its RSS at the end (``/proc/self/statm``), against
  the interpreter with the events loaded and nothing processed (the stream itself is held in
  memory by the benchmark, not by segflow: the difference is segflow's);
- the state directory's bytes after close, per profile, and the encoded rule state per
  (profile, rule);
- restart: a new process opens the same directory, and the time until its first batch
  (the events appended after the first run's end) is committed — the state is recovered from
  the store, nothing is re-read from the log's start.

No baseline: the target is absolute (RSS <= 4 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import commit, machine

CHILD = "benchmarks.footprint"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(mode: str, work: Path, people: int, events: int, rules: int) -> dict[str, float]:
    """Run in a fresh process: ``first`` processes the stream; ``restart`` reopens the state
    and processes the events appended after it."""
    from benchmarks.processor import ListLog, evaluator_for, make_stream
    from benchmarks.rules import TEN_RULES, hundred_rules
    from segflow.clock import ManualClock
    from segflow.rules import compile_segments
    from segflow.stream import Processor, ProcessorSettings
    from segflow.stream.processor import tune_gc
    from segflow.stream.state.rocksdb import RocksStateStore

    stream = make_stream(events + 5_000, people)  # the last 5,000: appended after the run
    first = stream[:events]
    log = ListLog(first if mode == "first" else stream)
    tune_gc(ProcessorSettings().gc_threshold)
    definitions = {10: TEN_RULES, 100: hundred_rules()}[rules]
    loaded_mb = _rss_mb()
    t0 = time.perf_counter()
    store = RocksStateStore(work / "state")
    end = max(e.timestamp_ms for e in stream)
    proc = Processor(log, store, evaluator_for(compile_segments(definitions)), ManualClock(end))
    opened = time.perf_counter() - t0
    processed, first_batch = 0, None
    while (n := proc.run_once()) > 0:
        processed += n
        if first_batch is None:
            first_batch = time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    out = {
        "loaded_mb": loaded_mb,
        "end_mb": _rss_mb(),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "processed": processed,
        "seconds": seconds,
        "open_s": opened,
        "first_batch_s": first_batch or 0.0,
    }
    if mode == "first":
        from benchmarks.processor import state_stats

        store.close()
        profiles, file_bpp, enc_bpp, rule_bpp = state_stats(work, "rocksdb")
        out |= {
            "profiles": profiles,
            "file_bpp": file_bpp,
            "enc_bpp": enc_bpp,
            "rule_bpp": rule_bpp / rules,
        }
    else:
        store.close()
    return out


def _run_child(mode: str, work: Path, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, "-m", CHILD, "--child", mode, str(work)]
    cmd += ["--people", str(args.people), "--events", str(args.events), "--rules", str(args.rules)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=1_300_000)
    ap.add_argument("--rules", type=int, choices=(10, 100), default=100)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, work = args.child
        print(json.dumps(child(mode, Path(work), args.people, args.events, args.rules)))
        return
    work = Path(tempfile.mkdtemp(prefix="segflow-bench-footprint-"))
    try:
        first = _run_child("first", work, args)
        size = sum(p.stat().st_size for p in (work / "state").rglob("*") if p.is_file())
        again = _run_child("restart", work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    profiles = int(first["profiles"])
    print(f"# footprint — {datetime.now(UTC):%Y-%m-%d}, commit {commit()}, {machine()}")
    print(
        f"# {args.events:,} events, {profiles:,} profiles, {args.rules} rules "
        f"({first['processed'] / first['seconds']:,.0f} events/s)\n"
    )
    print("| measure | segflow | target |")
    print("| --- | --- | --- |")
    grown = first["peak_mb"] - first["loaded_mb"]
    print(
        f"| peak RSS (of which segflow: over the loaded stream) | {first['peak_mb']:,.0f} MB ({grown:,.0f} MB) | <= 4 GB |"
    )
    print(f"| RSS at the end of the run | {first['end_mb']:,.0f} MB | - |")
    print(f"| state on disk | {size / 2**20:,.0f} MB ({size / profiles:,.0f} B per profile) | - |")
    print(
        f"| encoded profile / rule state per (profile, rule) | {first['enc_bpp']:,.0f} B / {first['rule_bpp']:,.1f} B | - |"
    )
    print(
        f"| restart: store opened / first batch committed ({again['processed']:,.0f} new events) | {again['open_s'] * 1000:,.0f} ms / {again['first_batch_s'] * 1000:,.0f} ms | - |"
    )


if __name__ == "__main__":
    main()
