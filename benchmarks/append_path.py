"""The embedded log's append path, CPU per event: ``SqliteEventLog.submit`` of a request's 100
normalised events (already encoded, as the collector hands them over) until the group commit
(dedupe lookup, records, dedupe index rows, offsets, fsync) has resolved the future.

A timing is the process's CPU time (``time.process_time``: the caller and the writer thread;
the wait for the disk is not CPU) over ``--requests`` appends of 100 events from
``--clients`` threads, each waiting for its append before the next (so groups form as
under load), the fastest of ``--repeat``, on a fresh
log per run. Before/after, in one invocation: ``python -m benchmarks.append_path
--baseline-src ../main/src`` alternates the two trees (each in its own process) for
``--rounds`` rounds and reports each median and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, commit, machine, run_in_tree
from benchmarks.payloads import batch_template, fill


def requests(count: int) -> list[tuple[list[object], list[bytes]]]:
    """``count`` requests' events and payloads, normalised as the collector does."""
    from segflow.spec.events import encode_event
    from segflow.spec.normalize import normalize
    from segflow.spec.wire import decode_batch, decode_message

    template = batch_template()
    out: list[tuple[list[object], list[bytes]]] = []
    for n in range(count):
        messages = [decode_message(raw) for raw in decode_batch(fill(template, n)).batch]
        events = [
            normalize(m, "track", source_id="src_bench", received_at_ms=1_714_564_800_000 + n)
            for m in messages
        ]
        out.append((events, [encode_event(e) for e in events]))  # type: ignore[misc]
    return out


def measure(count: int, clients: int, repeat: int) -> float:
    """Seconds of CPU the append path costs an event (the fastest of ``repeat`` runs)."""
    from segflow.log.sqlite import SqliteEventLog

    prepared = requests(count)
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="append-path-") as tmp:
            log = SqliteEventLog(Path(tmp) / "log.sqlite")
            log.append(prepared[0][0][:1])  # builds the dedupe index, starts the threads
            shares = [prepared[i::clients] for i in range(clients)]

            with ThreadPoolExecutor(clients) as pool:
                started = time.process_time()
                list(pool.map(_client, [log] * clients, shares))
                best = min(best, time.process_time() - started)
            log.close()
    return best / (count * 100)


def _client(log: Any, share: list[tuple[list[object], list[bytes]]]) -> None:
    """One client: its appends one after the other, each waiting for its commit."""
    for events, payloads in share:
        log.submit(events, (), payloads).result()


def in_tree(src: str, args: argparse.Namespace) -> float:
    """:func:`measure` run in a process whose ``segflow`` comes from ``src``."""
    argv = ["--seconds-only", "--requests", str(args.requests), "--clients", str(args.clients),
            "--repeat", str(args.repeat)]  # fmt: skip
    return float(run_in_tree("benchmarks.append_path", src, argv).split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", help="another tree's src/ to compare against")
    parser.add_argument("--seconds-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds_only:
        print(measure(args.requests, args.clients, args.repeat))
        return
    if not args.baseline_src:
        cost = measure(args.requests, args.clients, args.repeat)
        print(f"{commit()} | {machine()} | {cost * 1e6:.2f} us an event appended")
        return
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        theirs.append(in_tree(args.baseline_src, args))
        ours.append(in_tree(str(ROOT / "src"), args))
    ratio = statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
    print(f"machine: {machine()}; load {os.getloadavg()[0]:.1f}; {args.rounds} rounds")
    print(f"baseline us an event per round: {[round(t * 1e6, 2) for t in theirs]}")
    print(f"this tree us an event per round: {[round(o * 1e6, 2) for o in ours]}")
    print(
        f"| {commit()} | {statistics.median(ours) * 1e6:.2f} us an event | baseline"
        f" {statistics.median(theirs) * 1e6:.2f} us | {ratio:.2f}x less CPU an event |"
    )


if __name__ == "__main__":
    main()
