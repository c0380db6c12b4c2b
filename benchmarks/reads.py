"""Idle reads: profile and members reads on a supervised ``segflow serve`` with no other load.

Run: ``python -m benchmarks.reads [--requests 3000] [--api-port]``

A data directory made by segflow's own CLI (a source, an admin token, the 10 segments of
:data:`benchmarks.rules.TEN_RULES`), ``segflow serve`` supervised (``--api-port``: the admin
API on a port of its own), ``/v1/batch`` closed loop for ``--load-seconds`` (20,000 users),
then, once the processor's lag is 0, ``--requests`` reads one after the other on one
keep-alive connection, alternating ``GET /api/v1/profiles/user_id:{id}`` and
``GET /api/v1/segments/{name}/members?limit=50`` as ``benchmarks.soak`` does. Reported: p50,
p90 and p99 of send -> answer per kind, over the last two thirds of the reads (the first
third warms the caches). The client is Python (asyncio + uvloop) on the same machine: its own
time is part of each figure. ``benchmarks.soak`` measures the same reads under ingest load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import commit, machine
from benchmarks.end_to_end import (
    PER_REQUEST,
    Bodies,
    LagPoller,
    event_pool,
    make_template,
    stop,
    wait_lag_zero,
)
from benchmarks.loadgen import exchange, run_load
from benchmarks.rules import TEN_RULES
from benchmarks.soak import percentile, start_serve

USERS = 20_000


def read_paths(count: int = 2000, seed: int = 5) -> list[str]:
    """Profile reads of users the load sent, and members pages of the 10 segments, in turn.

    >>> paths = read_paths(4)
    >>> paths[0].endswith("/members?limit=50"), paths[1].startswith("/api/v1/profiles/user_id:")
    (True, True)
    """
    rng = random.Random(seed)
    known = [u for u in range(USERS) if u % 4 != 0]
    names = list(TEN_RULES)
    return [
        f"/api/v1/profiles/user_id:user-{rng.choice(known)}"
        if i % 2
        else f"/api/v1/segments/{names[(i // 2) % len(names)]}/members?limit=50"
        for i in range(count)
    ]


async def timed_reads(
    port: int, token: str, paths: list[str], count: int
) -> dict[str, list[float]]:
    """``count`` reads of ``paths`` in turn on one connection: ms per kind."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    out: dict[str, list[float]] = {"members": [], "profile": []}
    try:
        for n in range(count):
            path = paths[n % len(paths)]
            request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
            sent = time.perf_counter()
            status = await exchange(reader, writer, request.encode())
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
            kind = "members" if path.endswith("limit=50") else "profile"
            out[kind].append((time.perf_counter() - sent) * 1000)
    finally:
        writer.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--load-seconds", type=float, default=8.0)
    ap.add_argument("--api-port", action="store_true", help="serve --api-port; read there")
    args = ap.parse_args()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-reads-"))
    log = root / "serve.log"
    proc = None
    try:
        template, key, token = make_template(root)
        proc, port, api_port = start_serve(template, log, api_port=args.api_port)
        bodies = Bodies(event_pool(USERS))
        load = run_load(port, "/v1/batch", key, bodies, itertools.count(),
                        seconds=args.load_seconds, connections=8)  # fmt: skip
        poller = LagPoller(api_port, token)
        wait_lag_zero(poller, load.ok * PER_REQUEST, timeout=600)
        poller.client.close()
        found = asyncio.run(timed_reads(api_port, token, read_paths(), args.requests))
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {machine()}; commit {commit()}; load average before {load_before[0]:.1f}, "
          f"after {os.getloadavg()[0]:.1f}; {load.ok * PER_REQUEST:,} events; "
          f"{'--api-port' if args.api_port else 'one port'}")  # fmt: skip
    print("| read | p50 ms | p90 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for kind, values in found.items():
        kept = values[len(values) // 3 :]
        print(f"| {kind} | {percentile(kept, 0.5):.2f} | {percentile(kept, 0.9):.2f} | "
              f"{percentile(kept, 0.99):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
