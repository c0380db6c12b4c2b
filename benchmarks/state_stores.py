"""The processor on its state stores: ``state.sqlite`` (one host) against PostgreSQL
(``shared.dsn``, many hosts).

    python -m benchmarks.state_stores [--events 30000] [--people 20000] [--rounds 3]
                                      [--rules 0|10|100] [--dsn DSN]

The processor benchmark's seeded stream (``benchmarks.processor``: pre-decoded records, log
reads not measured), processed to the end by one ``Processor`` on each store, rounds
interleaved:

- ``sqlite`` (baseline): ``state.sqlite`` with ``synchronous=FULL``, pessimistic batches —
  segflow's default on one host;
- ``sqlite optimistic``: the same file, batches optimistic (as with the Kafka driver);
- ``postgres optimistic``: the state in PostgreSQL on loopback (``fsync`` and
  ``synchronous_commit`` on), batches optimistic, as processors on many hosts run them.

Without ``--dsn`` a throwaway server is started (tests/support/postgres.py) on the same cores
as the processor. Prints events/s per store (median of rounds) and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import commit, durable_postgres, machine
from benchmarks.processor import BATCH, ListLog, make_stream


def run(log: ListLog, store: Any, optimistic: bool, rules: dict[str, str] | None) -> float:
    """Seconds to process the whole stream."""
    from segflow.clock import ManualClock
    from segflow.rules import compile_segments
    from segflow.stream import Processor, ProcessorSettings

    evaluator = compile_segments(rules) if rules else None
    end = max(r.event.timestamp_ms for part in log.records for r in part)
    settings = ProcessorSettings(batch_size=BATCH, optimistic_tries=3 if optimistic else 0)
    proc = Processor(log, store, evaluator, ManualClock(end), settings=settings)
    t0 = time.perf_counter()
    while proc.run_once() > 0:
        pass
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rules", type=int, choices=(0, 10, 100), default=0)
    ap.add_argument("--dsn", default="")
    args = ap.parse_args()
    from benchmarks.rules import TEN_RULES, hundred_rules
    from segflow.stream.state.postgres import PostgresStateStore
    from segflow.stream.state.sqlite import SqliteStateStore

    rules = {0: None, 10: TEN_RULES, 100: hundred_rules()}[args.rules]
    log = ListLog(make_stream(args.events, args.people))
    dsn, stop = (args.dsn, lambda: None) if args.dsn else durable_postgres()
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-state-"))
    seconds: dict[str, list[float]] = {}
    try:
        print(f"machine: {machine()}  commit: {commit()}  events: {args.events:,}")
        for rnd in range(args.rounds):
            stores: dict[str, tuple[Callable[[], Any], bool]] = {
                "sqlite": (partial(SqliteStateStore, root / f"a{rnd}.sqlite"), False),
                "sqlite optimistic": (partial(SqliteStateStore, root / f"b{rnd}.sqlite"), True),
                "postgres optimistic": (
                    partial(PostgresStateStore, dsn, f"bench_{uuid.uuid4().hex[:8]}"),
                    True,
                ),
            }
            for name, (opener, optimistic) in stores.items():
                took = run(log, opener(), optimistic, rules)
                seconds.setdefault(name, []).append(took)
                print(f"round {rnd + 1}: {name}: {args.events / took:,.0f} ev/s")
    finally:
        stop()
    base = statistics.median(seconds["sqlite"])
    print("| store | events/s (median) | vs sqlite |")
    print("| --- | --- | --- |")
    for name, took in seconds.items():
        med = statistics.median(took)
        print(f"| {name} | {args.events / med:,.0f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
