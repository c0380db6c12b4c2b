"""Crypto-shredding's cost per event on the Kafka driver: sealing on the collector's produce
path and opening on every reader, against the plain records (no sealing) as the baseline.

Run: ``python -m benchmarks.shredding [--events 20000] [--batch 500] [--rounds 7]``

Generated Segment events (``benchmarks.payloads``-like: a track with ~10 properties, ~600
bytes encoded), 1 in 20 people new to the key table per batch (the rest cached, as on a warm
collector). Each round measures, interleaved: the baseline's per-event work on the produce
path (the msgpack payload as it is) and on the read path (``decode_event``), then segflow's
(``Shredder.seal_events`` over the same payloads; ``open_many`` then ``decode_event``). Prints
the median µs per event of each and the per-round ratio; the key table is ``keys.sqlite`` in a
temporary directory (``synchronous=FULL``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import commit, machine
from segflow.log.keys import SqliteKeyTable
from segflow.log.shredding import Shredder
from segflow.spec.events import Event, decode_event, encode_event


def events(n: int, people: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    return [
        Event(type="track", message_id=f"m{i}", source_id="web", timestamp_ms=1_700_000_000_000,
              received_at_ms=1_700_000_000_000, user_id=f"user-{rng.randrange(people)}",
              event="Product Viewed",
              properties={f"p{k}": f"value-{rng.randrange(1000)}-{k}" for k in range(10)})
        for i in range(n)
    ]  # fmt: skip


def per_event_us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def round_once(shredder: Shredder, evs: list[Event], batch: int) -> dict[str, float]:
    payloads = [encode_event(e) for e in evs]
    t0 = time.perf_counter()
    plain = list(payloads)  # the baseline produces the payload as it is
    t1 = time.perf_counter()
    sealed: list[bytes] = []
    for i in range(0, len(evs), batch):
        sealed += shredder.seal_events(evs[i : i + batch], payloads[i : i + batch])
    t2 = time.perf_counter()
    for value in plain:
        decode_event(value)
    t3 = time.perf_counter()
    for i in range(0, len(sealed), batch):
        for value in shredder.open_many(sealed[i : i + batch]):
            assert value is not None
            decode_event(value)
    t4 = time.perf_counter()
    n = len(evs)
    return {
        "produce_plain": per_event_us(t1 - t0, n),
        "produce_sealed": per_event_us(t2 - t1, n),
        "read_plain": per_event_us(t3 - t2, n),
        "read_sealed": per_event_us(t4 - t3, n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-shredding-"))
    shredder = Shredder(SqliteKeyTable(root / "keys.sqlite"))
    people = args.events // 4
    round_once(shredder, events(args.events, people, seed=1), args.batch)  # warm-up
    rounds = [
        round_once(shredder, events(args.events, people, seed=r + 2), args.batch)
        for r in range(args.rounds)
    ]
    shredder.table.close()
    print(f"# {machine()}, commit {commit()}, {args.events} events, batches of {args.batch}")
    for path in ("produce", "read"):
        plain = statistics.median(r[f"{path}_plain"] for r in rounds)
        sealed = statistics.median(r[f"{path}_sealed"] for r in rounds)
        extra = statistics.median(r[f"{path}_sealed"] - r[f"{path}_plain"] for r in rounds)
        print(f"{path}: plain {plain:.2f} µs/event, sealed {sealed:.2f} µs/event,"
              f" sealing adds {extra:.2f} µs/event")  # fmt: skip


if __name__ == "__main__":
    main()
