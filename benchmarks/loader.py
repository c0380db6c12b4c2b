"""Loader throughput: segflow's WarehouseLoader vs DuckDB's own bulk Arrow insert vs executemany.

    python -m benchmarks.loader [--events 300000] [--rounds 5] [--no-concurrent-queries]

All three write the same rows into the same ``events`` table (with its (source_id, message_id)
primary key). segflow starts from the SQLite log (what ``segflow serve`` reads: encoded events)
and includes reading it, building the Arrow batch, the idempotent insert and the cursor
commit; the Arrow baseline starts from a ready Arrow table; executemany runs on a slice (it is
too slow for all rows). segflow's loader thread CPU per event is printed too (its time on the
interpreter lock is at most that: DuckDB's share of it runs with the lock released).
With ``--concurrent-queries`` (the default) a thread runs an aggregate query on the same
database in a loop while segflow and the Arrow baseline load (as `segflow sql` would).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from segflow.clock import ManualClock
from segflow.config import WarehouseSettings
from segflow.log.base import Record
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.warehouse.batches import events_table
from segflow.warehouse.loader import WarehouseLoader
from segflow.warehouse.schema import ensure_schema

BATCH = 50_000


def make_events(n: int, seed: int = 7) -> list[Event]:
    return [
        Event(type="track", message_id=f"{seed}-{i:010d}", source_id="web", timestamp_ms=1_700_000_000_000 + i * 37,
              received_at_ms=1_700_000_000_000 + i * 37, user_id=f"u{(i * 7919) % 100_000}",
              event=("Clicked", "Viewed", "Order Completed")[i % 3], properties={"i": i, "plan": "pro"},
              context={"ip": "10.0.0.1"})
        for i in range(n)
    ]  # fmt: skip


@contextmanager
def queries(path: Path, enabled: bool) -> Iterator[None]:
    """Run an aggregate query on ``path`` in a loop (same process: same DuckDB instance)."""
    con = duckdb.connect(str(path))
    ensure_schema(con)
    stop = threading.Event()
    cursor = con.cursor()  # its own connection to the same instance

    def loop() -> None:
        while not stop.is_set():
            cursor.execute(
                "SELECT count(*), count(DISTINCT user_id), max(timestamp_ms) FROM events"
            ).fetchall()

    thread = threading.Thread(target=loop, daemon=True)
    if enabled:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if enabled:
            thread.join()
        cursor.close()
        con.close()


def run_segflow(path: Path, log: SqliteEventLog) -> tuple[float, float]:
    """Wall seconds and the loading thread's CPU seconds."""
    t0, cpu0 = time.perf_counter(), time.thread_time()
    settings = WarehouseSettings(batch_max_events=BATCH, release_between_batches=False)
    loader = WarehouseLoader(log, None, path, ManualClock(0), settings)
    loader.run_until_idle()
    loader.stop()
    return time.perf_counter() - t0, time.thread_time() - cpu0


def run_arrow(path: Path, records: list[Record]) -> float:
    con = duckdb.connect(str(path))
    ensure_schema(con)
    tables = [
        events_table(records[i : i + BATCH], loaded_at_ms=0) for i in range(0, len(records), BATCH)
    ]
    t0 = time.perf_counter()
    for t in tables:
        con.register("t", t)
        con.execute("INSERT INTO events SELECT * FROM t").fetchall()
        con.unregister("t")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def run_executemany(path: Path, records: list[Record]) -> float:
    con = duckdb.connect(str(path))
    ensure_schema(con)
    rows = [tuple(r.values()) for r in events_table(records, loaded_at_ms=0).to_pylist()]
    t0 = time.perf_counter()
    con.executemany(f"INSERT INTO events VALUES ({', '.join('?' * 19)})", rows)
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--executemany-events", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-concurrent-queries", dest="concurrent", action="store_false")
    args = ap.parse_args()
    events = make_events(args.events)
    rates: dict[str, list[float]] = {"segflow": [], "arrow": [], "executemany": []}
    cpu_us: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        log = SqliteEventLog(str(Path(d) / "log.sqlite"), partitions=8)
        for i in range(0, len(events), 10_000):
            log.append(events[i : i + 10_000])
        records = [r for p in range(8) for r in log.read(p, 0, args.events)]
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            paths = {k: Path(d) / f"{k}-{rnd}.duckdb" for k in rates}
            with queries(paths["segflow"], args.concurrent):
                wall, cpu = run_segflow(paths["segflow"], log)
                seg = args.events / wall
            with queries(paths["arrow"], args.concurrent):
                arrow = args.events / run_arrow(paths["arrow"], records)
            r = {
                "segflow": seg,
                "arrow": arrow,
                "executemany": args.executemany_events / run_executemany(paths["executemany"], records[: args.executemany_events]),
            }  # fmt: skip
            for p in paths.values():
                os.remove(p)
            if rnd:
                for k, v in r.items():
                    rates[k].append(v)
                cpu_us.append(cpu / args.events * 1e6)
        log.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    vs_arrow = statistics.median(
        s / a for s, a in zip(rates["segflow"], rates["arrow"], strict=True)
    )
    vs_many = statistics.median(
        s / m for s, m in zip(rates["segflow"], rates["executemany"], strict=True)
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; events={args.events}"
    )
    print(
        "| segflow ev/s | arrow insert ev/s | executemany ev/s | vs arrow | vs executemany"
        " | segflow loader thread CPU us/event |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {med['segflow']:,.0f} | {med['arrow']:,.0f} | {med['executemany']:,.0f} | {vs_arrow:.2f}x | {vs_many:.0f}x"
        f" | {statistics.median(cpu_us):.1f} |"
    )


if __name__ == "__main__":
    main()
