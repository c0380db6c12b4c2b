"""The collector's own cost per ``/v1/batch`` request, in process: the ASGI app from body to
answer (auth, decode, validate, normalise, encode, response) with the log replaced by one that
acknowledges at once, so no fsync, HTTP server or other role is measured.

One measurement: ``python -m benchmarks.collect_path``. Before/after a change, in one
invocation: ``python -m benchmarks.collect_path --baseline-src ../main/src`` alternates the two
source trees (each in its own process) for ``--rounds`` rounds and reports each median and the
median of the per-round ratios. A timing is the fastest of ``--repeat`` runs of 100 requests in
CPU time (``time.process_time``: a shared machine's other jobs do not count).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from benchmarks.common import commit, machine, run_in_tree
from benchmarks.payloads import batch_template, fill
from segflow.collect.app import CollectorApp
from segflow.collect.catalog import SourceCatalog
from segflow.collect.ingest import Ingestor


class InstantLog:
    """Acknowledges every append at once (positions are not read by the collector's answer)."""

    pending_events = 0

    def submit(self, events: Any, dead_letters: Any = (), payloads: Any = None) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result([(0, i) for i in range(len(events))])
        return done


async def one_request(app: CollectorApp, body: bytes, key: bytes) -> int:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/batch",
        "query_string": b"",
        "headers": [(b"authorization", b"Basic " + key), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


def measure(repeat: int, requests: int) -> float:
    """Seconds of CPU a ``/v1/batch`` request of 100 events costs the collector app."""
    with tempfile.TemporaryDirectory(prefix="collect-path-") as tmp:
        catalog = SourceCatalog(Path(tmp) / "catalog.sqlite")
        try:
            return _measure(catalog, repeat, requests)
        finally:
            catalog.close()


def _measure(catalog: SourceCatalog, repeat: int, requests: int) -> float:
    _, write_key = catalog.create("bench")
    app = CollectorApp(Ingestor(InstantLog(), catalog))  # type: ignore[arg-type]
    key = base64.b64encode(f"{write_key}:".encode())
    template = batch_template()
    bodies = [fill(template, n) for n in range(requests)]

    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            for body in bodies:
                assert await one_request(app, body, key) == 200
            best = min(best, time.process_time() - started)
        return best

    return asyncio.run(run()) / requests


def in_tree(src: str, repeat: int) -> float:
    """:func:`measure` run in a process whose ``segflow`` comes from ``src``."""
    argv = ["--repeat", str(repeat), "--seconds-only"]
    return float(run_in_tree("benchmarks.collect_path", src, argv).split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", help="another tree's src/ to compare against")
    parser.add_argument("--seconds-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds_only:
        print(measure(args.repeat, args.requests))
        return
    if not args.baseline_src:
        cost = measure(args.repeat, args.requests)
        print(
            f"{commit()} | {machine()} | {cost * 1e6:,.0f} us a request | {100 / cost:,.0f} events/s"
        )
        return
    here = str(Path(__file__).resolve().parent.parent / "src")
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        theirs.append(in_tree(args.baseline_src, args.repeat))
        ours.append(in_tree(here, args.repeat))
    ratio = statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
    print(f"machine: {machine()}; {args.rounds} rounds, baseline then this tree in each")
    print(f"baseline us a request per round: {[round(t * 1e6) for t in theirs]}")
    print(f"this tree us a request per round: {[round(o * 1e6) for o in ours]}")
    print(
        f"| {commit()} | {statistics.median(ours) * 1e6:,.0f} us ({100 / statistics.median(ours):,.0f}"
        f" events/s) | baseline {statistics.median(theirs) * 1e6:,.0f} us "
        f"({100 / statistics.median(theirs):,.0f} events/s) | {ratio:.2f}x less CPU a request |"
    )


if __name__ == "__main__":
    main()
