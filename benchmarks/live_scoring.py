"""The processor's per-event cost of scoring on the fly.

    python -m benchmarks.live_scoring [--events 50000] [--people 30000] [--rounds 5]
                                      [--rules 10|100] [--store rocksdb|sqlite]

Both sides are segflow's ``Processor`` on the processor benchmark's seeded stream
(``benchmarks.processor.make_stream``, pre-decoded records, log reads not measured), with the
rules benchmark's 10 (or 100) segment rules, the clock at the stream's end. The live side also
applies 1 logistic propensity model of 8 features and 1 K-Means model of 8 centroids on the
same 8 features (``segflow.ml.live.DEFAULT_LIVE_FEATURES``: each model's features are its own
computed traits, ``ml.<model>.<feature>``), plus a rule on each (``score bench >= 0.5``,
``cluster id of model bench_segs = 3``), with the change feed's ``ScoreChanged`` at its
default precision: what the live models cost on top of the same processor without them.
The exports are synthetic (seeded numbers of the right shapes), so nothing is trained here.
Interleaved rounds after a warm-up; medians and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.processor import BATCH, ListLog, make_stream, open_store, timed_drain
from segflow.clock import ManualClock
from segflow.ml.live import DEFAULT_LIVE_FEATURES


def exports(seed: int = 3) -> list[dict[str, Any]]:
    """A logistic model and a K-Means model over the default live features (seeded numbers)."""
    rng = np.random.default_rng(seed)
    width = len(DEFAULT_LIVE_FEATURES)
    common = {"features": dict(DEFAULT_LIVE_FEATURES), "log1p": [True] * width,
              "mean": rng.uniform(0, 2, width).tolist(), "scale": rng.uniform(0.5, 2, width).tolist()}  # fmt: skip
    x = np.linspace(-6, 6, 64)
    logistic = {**common, "model": "bench", "kind": "logistic", "run_id": "bench",
                "coefficients": rng.normal(0, 1, width).tolist(), "intercept": -1.0,
                "calibration": [{"method": "isotonic", "x": x.tolist(), "y": (1 / (1 + np.exp(-x))).tolist()}],
                "ranked_scores": np.sort(rng.uniform(0, 1, 10_000)).tolist()}  # fmt: skip
    kmeans = {**common, "model": "bench_segs", "kind": "kmeans", "run_id": "bench",
              "centroids": rng.normal(0, 1, (8, width)).tolist(), "cluster_ids": list(range(8)),
              "names": {str(i): f"Cluster {i}" for i in range(8)}}  # fmt: skip
    return [logistic, kmeans]


def run(
    log: ListLog, path: Path, rules: dict[str, str], live: bool, store_kind: str
) -> tuple[float, int]:
    """Seconds to process the stream, and how many profile scorings the live models did."""
    from segflow.rules import compile_segments
    from segflow.stream import Processor, ProcessorSettings

    store = open_store(path, store_kind)
    end = max(r.event.timestamp_ms for part in log.records for r in part)
    settings = ProcessorSettings(batch_size=BATCH)
    if live:
        rules = {
            **rules,
            "likely": "score bench >= 0.5",
            "group_3": "cluster id of model bench_segs = 3",
        }
    proc = Processor(log, store, compile_segments(rules), ManualClock(end), settings=settings)
    if live:
        for export in exports():
            proc.put_live_model(export)
    elapsed = timed_drain(proc)
    store.close()
    return elapsed, proc.live.scored


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--people", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rules", type=int, choices=(10, 100), default=10)
    ap.add_argument("--store", choices=("rocksdb", "sqlite"), default="rocksdb")
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    from benchmarks.rules import TEN_RULES, hundred_rules

    rules = TEN_RULES if args.rules == 10 else hundred_rules()
    log = ListLog(make_stream(args.events, args.people))
    tmp = Path(tempfile.mkdtemp(prefix="segflow-bench-live-"))
    try:
        plain, live, ratios, scored = [], [], [], 0
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            times = {}
            for side in (False, True) if rnd % 2 else (True, False):
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                times[side], n = run(log, tmp, rules, side, args.store)
                scored = n if side else scored
            if rnd == 0:
                continue
            per = {k: v / args.events * 1e6 for k, v in times.items()}
            plain.append(per[False])
            live.append(per[True])
            ratios.append(per[True] / per[False])
            print(f"round {rnd}: without {per[False]:.2f} us/event, with live models {per[True]:.2f} us/event",
                  file=sys.stderr)  # fmt: skip
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        a, b, r = statistics.median(plain), statistics.median(live), statistics.median(ratios)
        print(
            f"\nmachine: {machine}; {args.events:,} events, {args.rules} rules, store {args.store}"
        )
        print(
            f"profiles scored by the live models per run: {scored:,} ({scored / args.events:.2f} per event)"
        )
        print(
            "| processor | us per event (median) | ratio (median of rounds) | added us per event |"
        )
        print("| --- | --- | --- | --- |")
        print(f"| without live models | {a:.2f} | 1.00 | - |")
        print(f"| 1 logistic (8 features) + 1 K-Means (8 centroids) live | {b:.2f} | {r:.2f} | {b - a:.2f} |")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
