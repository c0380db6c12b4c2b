"""The processor on its state stores: RocksDB (``state/``, the embedded default),
``state.sqlite`` (one host, shared) and PostgreSQL (``shared.dsn``, many hosts).

    python -m benchmarks.state_stores [--events 30000] [--people 20000] [--rounds 3]
                                      [--rules 0|10|100] [--dsn DSN | --no-postgres]
    python -m benchmarks.state_stores --micro [--keys 200000] [--batch 500] [--rounds 5]
    python -m benchmarks.state_stores --footprint [--keys 1000000]

The processor benchmark's seeded stream (``benchmarks.processor``: pre-decoded records, log
reads not measured), processed to the end by one ``Processor`` on each store, rounds
interleaved:

- ``sqlite`` (baseline): ``state.sqlite`` with ``synchronous=FULL``, pessimistic batches —
  segflow's default on one host;
- ``sqlite optimistic``: the same file, batches optimistic (as with the Kafka driver);
- ``postgres optimistic``: the state in PostgreSQL on loopback (``fsync`` and
  ``synchronous_commit`` on), batches optimistic, as processors on many hosts run them;
- ``rocksdb``: ``state/`` with a synced WAL per commit, pessimistic batches.

``--micro``: the stores alone, RocksDB beside SQLite (both durable: a synced WAL, and
``synchronous=FULL``): commits of ``--batch`` writes of random 24-byte keys (64-byte values)
plus an offset, then point reads of random present keys and of absent ones, each in
transactions of ``--batch`` reads; rounds interleaved, medians: microseconds per key written
and per read. ``--footprint``: one child process per store writes ``--keys`` small pairs
(24-byte keys, 16-byte values, commits of 10,000), reads them all back, and reports its RSS
growth and the bytes on disk after closing.

Without ``--dsn`` a throwaway server is started (tests/support/postgres.py) on the same cores
as the processor. Prints events/s per store (median of rounds) and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
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


def opener(name: str, path: Path) -> Any:
    """A durable store of ``name`` (``rocksdb`` | ``sqlite``) at ``path``."""
    from segflow.stream.state.rocksdb import RocksStateStore
    from segflow.stream.state.sqlite import SqliteStateStore

    if name == "rocksdb":
        return RocksStateStore(path / "state")
    return SqliteStateStore(path / "state.sqlite")


def random_keys(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [f"{rnd.getrandbits(96):024x}" for _ in range(n)]


def micro_round(store: Any, keys: list[str], batch: int) -> tuple[float, float, float]:
    """Microseconds per key written (synced commits of ``batch``), per present read and per
    absent read."""
    value = bytes(64)
    t0 = time.perf_counter()
    for start in range(0, len(keys), batch):
        tx = store.begin_global()
        for key in keys[start : start + batch]:
            tx.set("bench", key, value)
        tx.set_offset(start + batch, 0)
        tx.commit()
    wrote = (time.perf_counter() - t0) / len(keys) * 1e6
    present = random.Random(1).sample(keys, min(len(keys), 50_000))
    absent = [k[::-1] + "x" for k in present]
    reads = []
    for sample in (present, absent):
        t0 = time.perf_counter()
        for start in range(0, len(sample), batch):
            tx = store.begin_global()
            for key in sample[start : start + batch]:
                tx.get("bench", key)
            tx.rollback()
        reads.append((time.perf_counter() - t0) / len(sample) * 1e6)
    return wrote, reads[0], reads[1]


def micro(keys: int, batch: int, rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-micro-"))
    got: dict[str, list[tuple[float, float, float]]] = {}
    print(f"machine: {machine()}  commit: {commit()}  keys: {keys:,}  batch: {batch}")
    for rnd in range(rounds):
        for name in ("sqlite", "rocksdb"):
            where = root / f"{name}-{rnd}"
            where.mkdir()
            store = opener(name, where)
            try:
                row = micro_round(store, random_keys(keys, rnd), batch)
            finally:
                store.close()
            got.setdefault(name, []).append(row)
            print(f"round {rnd + 1}: {name}: " + ", ".join(f"{x:.2f}" for x in row))
    print("| store | us per key written (synced commits) | us per read (present) | us per read (absent) |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    for name, rows in got.items():
        meds = [statistics.median(r[i] for r in rows) for i in range(3)]
        print(f"| {name} | {meds[0]:.2f} | {meds[1]:.2f} | {meds[2]:.2f} |")


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def footprint_child(name: str, path: Path, keys: int) -> None:
    """In a child process: RSS growth and bytes on disk for ``keys`` small pairs."""
    before = _rss_kb()
    store = opener(name, path)
    names = random_keys(keys, 0)
    for start in range(0, keys, 10_000):
        tx = store.begin_global()
        for key in names[start : start + 10_000]:
            tx.set("bench", key, b"0123456789abcdef")
        tx.commit()
    for start in range(0, keys, 10_000):
        tx = store.begin_global()
        for key in names[start : start + 10_000]:
            tx.get("bench", key)
        tx.rollback()
    rss = _rss_kb() - before
    store.close()
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"{name} {rss} {size}")


def footprint(keys: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-footprint-"))
    print(f"machine: {machine()}  commit: {commit()}  keys: {keys:,}")
    print("| store | RSS growth (MB) | on disk (MB) | bytes per key on disk |")
    print("| --- | --- | --- | --- |")
    for name in ("sqlite", "rocksdb"):
        where = root / name
        where.mkdir()
        code = f"from benchmarks.state_stores import footprint_child as f; from pathlib import Path; f({name!r}, Path({str(where)!r}), {keys})"  # fmt: skip
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)  # fmt: skip
        _, rss, size = out.stdout.split()
        print(f"| {name} | {int(rss) / 1024:.0f} | {int(size) / 2**20:.1f} | {int(size) / keys:.1f} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rules", type=int, choices=(0, 10, 100), default=0)
    ap.add_argument("--dsn", default="")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--micro", action="store_true")
    ap.add_argument("--footprint", action="store_true")
    ap.add_argument("--keys", type=int, default=0)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    if args.micro:
        return micro(args.keys or 200_000, args.batch, args.rounds)
    if args.footprint:
        return footprint(args.keys or 1_000_000)
    from benchmarks.rules import TEN_RULES, hundred_rules
    from segflow.stream.state.postgres import PostgresStateStore
    from segflow.stream.state.rocksdb import RocksStateStore
    from segflow.stream.state.sqlite import SqliteStateStore

    rules = {0: None, 10: TEN_RULES, 100: hundred_rules()}[args.rules]
    log = ListLog(make_stream(args.events, args.people))
    no_pg = args.no_postgres
    dsn, stop = (args.dsn, lambda: None) if args.dsn or no_pg else durable_postgres()
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
                "rocksdb": (partial(RocksStateStore, root / f"r{rnd}"), False),
            }
            if no_pg:
                del stores["postgres optimistic"]
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
