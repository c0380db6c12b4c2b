"""Overload: a minute at twice the sustainable rate through ``/v1/batch``.

1. Sustainable rate: closed loop, 16 keep-alive connections, batches of 100 (~600-byte)
   events, ``--measure`` seconds: accepted events/s.
2. Overload: open loop at ``--factor`` (2) times that request rate, spread over
   ``--connections`` (128) connections, for ``--seconds`` (60). Each 429/503 must carry
   ``Retry-After``; the server's RSS is sampled every 0.5 s.
3. Nothing acked is lost: the server is stopped (SIGTERM) and every messageId that got a
   200 is looked up in ``log.sqlite``.

Server pinned to core 0 (``taskset``), this load generator to core 1. segflow's default
settings (``collect.max_inflight_requests`` 64, ``log.max_pending_events`` 200,000), except the
nightly ML scheduler, off (``SEGFLOW_ML__SCHEDULE_ENABLED=false``: its start-up runs on an empty
warehouse would share the core and the memory figures). RSS is reported every 10 s, to show
whether it levels off.

Run: ``python -m benchmarks.overload [--seconds 60] [--factor 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import commit, machine
from benchmarks.ingest import pct, start_segflow
from benchmarks.loadgen import request_bytes, run_load
from benchmarks.payloads import batch_template, fill

BATCH = 100


@dataclass
class Storm:
    statuses: Counter[int] = field(default_factory=Counter)
    acked: set[int] = field(default_factory=set)
    missing_retry_after: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # of the 200s
    offered: int = 0
    seconds: float = 0.0


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> tuple[int, bool]:  # fmt: skip
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"content-length:")
    length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
    if length:
        await reader.readexactly(length)
    return int(head[9:12]), b"retry-after:" in lower


async def _storm(port: int, key: str, rate: float, connections: int, seconds: float) -> Storm:
    template = batch_template()
    counter = itertools.count(10_000_000)
    out = Storm()
    start = time.perf_counter()
    deadline = start + seconds
    interval = connections / rate

    async def worker(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        scheduled = start + interval * i / connections
        try:
            while True:
                scheduled += interval
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if scheduled >= deadline:
                    return
                n = next(counter)
                out.offered += 1
                sent = time.perf_counter()
                status, has_retry = await _exchange(reader, writer, request_bytes("/v1/batch", fill(template, n), key))  # fmt: skip
                out.statuses[status] += 1
                if status == 200:
                    out.acked.add(n)
                    out.latencies_ms.append((time.perf_counter() - sent) * 1000)
                elif status in (429, 503) and not has_retry:
                    out.missing_retry_after += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    out.seconds = time.perf_counter() - start
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stored(data: Path) -> set[int]:
    from segflow.spec.events import decode_event

    con = sqlite3.connect(f"file:{data / 'log.sqlite'}?mode=ro", uri=True)
    try:
        ids = {decode_event(p).message_id for (p,) in con.execute("SELECT payload FROM records")}
    finally:
        con.close()
    return {int(m.split("-")[0]) for m in ids if m[:1].isdigit()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measure", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=128)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    os.environ.setdefault("SEGFLOW_ML__SCHEDULE_ENABLED", "false")
    root = Path(tempfile.mkdtemp(prefix="segflow-overload-"))
    proc, port, key = start_segflow(root)
    rss: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.5):
            rss.append(_rss_mb(proc.pid))

    try:
        template = batch_template()
        bodies = lambda n: fill(template, n)  # noqa: E731
        counter = itertools.count()
        run_load(port, "/v1/batch", key, bodies, counter, seconds=1.0, connections=16)  # warm-up
        closed = run_load(port, "/v1/batch", key, bodies, counter, seconds=args.measure, connections=16)  # fmt: skip
        sustainable_rps = closed.ok / closed.seconds
        rss_before = _rss_mb(proc.pid)
        threading.Thread(target=sample, daemon=True).start()
        storm = asyncio.run(_storm(port, key, sustainable_rps * args.factor, args.connections, args.seconds))  # fmt: skip
        sampling.set()
        rss_after = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    stored = _stored(root / "segflow")
    lost = storm.acked - stored
    shutil.rmtree(root, ignore_errors=True)
    report(args, sustainable_rps, storm, rss_before, max(rss or [0.0]), rss_after, len(lost))
    print("RSS MB every 10 s:", [round(v) for v in rss[::20]])


def report(args: argparse.Namespace, rps: float, storm: Storm, before: float, peak: float, after: float, lost: int) -> None:  # fmt: skip
    s = storm.statuses
    print(f"machine: {machine()}; server on core 0, load on core 1; {args.connections} connections")
    print(
        "| date | commit | sustainable events/s | offered req/s (x factor) | 200 req/s | 429 | 503 | other | "
        "missing Retry-After | 200 p50/p99 ms | RSS before/peak/after MB | acked lost |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    other = sum(v for k, v in s.items() if k not in (200, 429, 503))
    print(
        f"| {datetime.now(UTC):%Y-%m-%d} | {commit()} | {rps * BATCH:,.0f} | "
        f"{storm.offered / storm.seconds:,.0f} (x{args.factor:g}, {args.seconds:g} s) | "
        f"{s[200] / storm.seconds:,.0f} | {s[429]:,} | {s[503]:,} | {other} | {storm.missing_retry_after} | "
        f"{pct(storm.latencies_ms, 0.5):.0f}/{pct(storm.latencies_ms, 0.99):.0f} | "
        f"{before:.0f}/{peak:.0f}/{after:.0f} | {lost} of {len(storm.acked):,} requests |"
    )


if __name__ == "__main__":
    main()
