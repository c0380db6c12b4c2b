"""Features + sessions as of T: segflow's SQL model on DuckDB vs the same features in pandas.

    python -m benchmarks.features [--profiles 100000] [--events 5000000] [--rounds 5]

Data: a seeded synthetic history in a DuckDB file (events table, no identities: every event
gets the fallback profile id). pandas reads the same rows (``profile_id``, type, event,
timestamp_ms, message_id, properties) into a DataFrame before its timer starts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import duckdb

from benchmarks.baselines.features_pandas import features_pandas
from segflow.config import WarehouseSettings
from segflow.warehouse.features import compute_features
from segflow.warehouse.schema import ensure_schema

T = 1_700_000_000_000
KEYS = ("Report Built", "Export", "Invite")


def generate(con: duckdb.DuckDBPyConnection, profiles: int, events: int) -> None:
    ensure_schema(con)
    con.execute(f"""
        INSERT INTO events (message_id, source_id, type, event, timestamp_ms, timestamp, received_at_ms,
                            user_id, properties, traits, context)
        SELECT 'm' || i, 'web', CASE WHEN i % 10 = 0 THEN 'page' ELSE 'track' END,
               CASE WHEN i % 10 = 0 THEN NULL ELSE ['Clicked', 'Order Completed', 'Report Built', 'Export',
                    'Invite', 'Support Ticket Created', 'Viewed', 'Searched', 'Clicked'][(hash(i) % 9)::INT + 1] END,
               {T} - (hash(i * 31) % 15552000000::BIGINT)::BIGINT AS ts, make_timestamp(({T} - (hash(i * 31) % 15552000000::BIGINT)::BIGINT) * 1000),
               {T}, 'u' || (hash(i * 7) % {profiles}),
               json_object('revenue', (hash(i * 13) % 200)::INT), '{{}}', '{{}}'
        FROM range({events}) AS r(i)""")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    settings = WarehouseSettings(key_features=KEYS)
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(os.path.join(d, "w.duckdb"))
        generate(con, args.profiles, args.events)
        frame = con.sql(
            "SELECT profile_id, type, event, timestamp_ms, message_id, properties FROM profile_events"
        ).df()
        seg, pdt = [], []
        for rnd in range(args.rounds + 1):
            t0 = time.perf_counter()
            info = compute_features(con, T, settings)
            a = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = features_pandas(frame, T, KEYS)
            b = time.perf_counter() - t0
            if rnd:
                seg.append(a)
                pdt.append(b)
        assert info.profiles == len(out)
    ratio = statistics.median(p / s for s, p in zip(seg, pdt, strict=True))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; profiles={args.profiles} events={args.events}"
    )
    print("| segflow s | pandas s | speed-up |")
    print("| --- | --- | --- |")
    print(f"| {statistics.median(seg):.2f} | {statistics.median(pdt):.2f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
