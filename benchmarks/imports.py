"""Bulk import end to end: a JSONL file -> validation, dedupe, durable log append (the Ingestor).

    python -m benchmarks.imports [--events 100000] [--rounds 5]     # --events 10000000 for the target

Baseline: DuckDB's ``read_json`` of the same file into a table — a raw load with no
validation, no dedupe and no log, i.e. the floor of "just get the rows in".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from segflow.clock import WallClock
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor
from segflow.log.sqlite import SqliteEventLog
from segflow.warehouse.importer import import_file


def write_jsonl(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({
                "type": "track", "messageId": f"m{i}", "userId": f"u{(i * 7919) % 100_000}",
                "event": ("Clicked", "Viewed", "Order Completed")[i % 3],
                "timestamp": "2024-01-01T00:00:00Z", "properties": {"i": i, "revenue": i % 100},
            }) + "\n")  # fmt: skip


def run_segflow(root: Path, path: Path) -> tuple[float, int]:
    root.mkdir()
    log = SqliteEventLog(root / "log.sqlite")
    catalog = SourceCatalog(root / "catalog.sqlite")
    source, _ = catalog.create("hist")
    t0 = time.perf_counter()
    info = import_file(
        path, Ingestor(log, catalog), source, log.dead_letter, WallClock(), fmt="jsonl"
    )
    elapsed = time.perf_counter() - t0
    log.close()
    catalog.close()
    return elapsed, info.accepted


def run_duckdb(root: Path, path: Path) -> float:
    con = duckdb.connect(str(root / "raw.duckdb"))
    t0 = time.perf_counter()
    con.execute(
        "CREATE TABLE raw AS SELECT * FROM read_json(?, format = 'newline_delimited')", [str(path)]
    )
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    seg, raw = [], []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.jsonl"
        write_jsonl(path, args.events)
        for rnd in range(args.rounds + 1):
            root = Path(d) / f"r{rnd}"
            a, accepted = run_segflow(root, path)
            assert accepted == args.events
            b = run_duckdb(root, path)
            if rnd:
                seg.append(args.events / a)
                raw.append(args.events / b)
    ratio = statistics.median(s / r for s, r in zip(seg, raw, strict=True))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; events={args.events}"
    )
    print("| segflow import ev/s | duckdb read_json ev/s | ratio |")
    print("| --- | --- | --- |")
    print(f"| {statistics.median(seg):,.0f} | {statistics.median(raw):,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
