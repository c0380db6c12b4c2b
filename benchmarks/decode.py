"""Decode + validate Segment batches: segflow (msgspec + spec rules) vs pydantic v2.

Both sides take the same ``/v1/batch`` bodies (100 events of ~500 bytes) and end with every
message decoded and checked against the same rules (types, userId/anonymousId, track needs
event, ...). segflow keeps messages raw first so one bad message does not sink its batch
(the production path); pydantic validates the whole batch at once, which favours it.

Run: ``python -m benchmarks.decode [--rounds 7]``
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from benchmarks.baselines.pydantic_models import Batch
from benchmarks.common import commit, machine, median
from benchmarks.payloads import batches
from segflow.spec.wire import decode_batch, decode_message, validate


def run_segflow(bodies: list[bytes]) -> int:
    n = 0
    for body in bodies:
        for raw in decode_batch(body).batch:
            msg = decode_message(bytes(raw))
            validate(msg, msg.type or "")
            n += 1
    return n


def run_pydantic(bodies: list[bytes]) -> int:
    n = 0
    for body in bodies:
        n += len(Batch.model_validate_json(body).batch)
    return n


def timed(fn: object, bodies: list[bytes]) -> float:
    start = time.perf_counter()
    fn(bodies)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    bodies = batches(args.batches)
    megabytes = sum(map(len, bodies)) / 1e6
    events = run_segflow(bodies)
    assert events == run_pydantic(bodies)
    ours, theirs, ratios = [], [], []
    for _ in range(args.rounds):
        a = timed(run_segflow, bodies)
        b = timed(run_pydantic, bodies)
        ours.append(a)
        theirs.append(b)
        ratios.append(b / a)
    s, p = median(ours), median(theirs)
    print(
        f"machine: {machine()}; {args.batches} batches, {events} events, {megabytes:.1f} MB, {args.rounds} rounds"
    )
    print(
        "| date | commit | segflow MB/s | segflow events/s | pydantic v2 MB/s | pydantic events/s | ratio | target |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {datetime.now(UTC):%Y-%m-%d} | {commit()} | {megabytes / s:.0f} | {events / s:,.0f} | "
        f"{megabytes / p:.0f} | {events / p:,.0f} | {median(ratios):.2f}x | >= 4x |"
    )


if __name__ == "__main__":
    main()
