"""The Kafka driver's dedupe reservations: one ``reserve`` (and its ``confirm``) per batch on the
SQLite file against PostgreSQL (``shared.dsn``).

Run: ``python -m benchmarks.reservations [--calls 100] [--rounds 3] [--dsn DSN]``

Without ``--dsn`` it starts a throwaway PostgreSQL server on loopback (tests/support/postgres.py)
and turns ``fsync``, ``full_page_writes`` and ``synchronous_commit`` back on (the test server
runs without them), so both stores make every commit durable as a collector needs: SQLite with
``synchronous=FULL``, PostgreSQL with a WAL flush. Each call reserves new keys (the hot path:
all FRESH), then confirms them; rounds alternate the stores. Prints the median and p90 ms per
call. No baseline; a figure for docs/scaling.md, not a budget.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import commit, durable_postgres, machine
from segflow.log.reservations import ReservationStore, ReservationTable, dedupe_key


def measure(store: ReservationTable, batch: int, calls: int, tag: str) -> dict[str, list[float]]:
    reserve: list[float] = []
    cycle: list[float] = []
    for call in range(calls):
        keys = [dedupe_key(tag, f"{call}-{i}") for i in range(batch)]
        now = int(time.time() * 1000)
        start = time.perf_counter()
        store.reserve([(k, now) for k in keys], now_ms=now)
        reserved = time.perf_counter()
        store.confirm(keys)
        reserve.append((reserved - start) * 1000)
        cycle.append((time.perf_counter() - start) * 1000)
    return {"reserve": reserve, "reserve+confirm": cycle}


def _nothing() -> None:
    pass


def p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dsn", default="")
    args = ap.parse_args()
    from segflow.log.reservations_pg import PgReservationStore

    dsn, stop = (args.dsn, _nothing) if args.dsn else durable_postgres()
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-reservations-"))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    stores: dict[str, ReservationTable] = {
        "sqlite": ReservationStore(root / "dedupe.sqlite", window_ms=86_400_000),
        "postgres": PgReservationStore(dsn, schema=schema, window_ms=86_400_000),
    }
    results: dict[tuple[str, int, str], list[float]] = {}
    try:
        print(f"machine: {machine()}  commit: {commit()}")
        for rnd in range(args.rounds):
            for batch in (50, 2_500):
                for name, store in stores.items():
                    tag = f"{rnd}-{batch}-{name}"
                    for what, ms in measure(store, batch, args.calls, tag).items():
                        results.setdefault((name, batch, what), []).extend(ms)
        print("| store | keys per call | call | median ms | p90 ms |")
        print("| --- | --- | --- | --- | --- |")
        for (name, batch, what), ms in sorted(results.items()):
            median = statistics.median(ms)
            print(f"| {name} | {batch} | {what} | {median:.2f} | {p90(ms):.2f} |")
    finally:
        for store in stores.values():
            store.close()
        stop()


if __name__ == "__main__":
    main()
