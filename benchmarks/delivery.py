"""Delivery freshness and throughput: segflow's worker vs a hand-written outbox poster.

Run: ``python -m benchmarks.delivery [--rounds 5]``.

- **Freshness**: changes appended to a SQLite change feed (the processor's outbox) at 1,000
  and 5,000/s; latency from the append to the receiver getting the webhook. segflow: the
  durable queue (``delivery.sqlite``), signing, per-profile ordering. Baseline: one thread
  polling the same feed and POSTing each change with a keep-alive ``httpx.Client`` (no
  queue, no signing, no retries) — what one would write in an afternoon.
- **Throughput**: 3,000 queued changes to one fast receiver, segflow unbatched and batched
  (100 per request) vs the same baseline.
- **Isolation**: segflow's freshness at 500 changes/s to the fast receiver while a second
  subscribed destination hangs (accepts connections, never answers; 60 s timeout), against
  the same with a second *fast* destination instead (the baseline of this row: the same
  queueing work, so a difference is what the hanging one costs the other).

The receiver is uvicorn in a subprocess (``taskset -c 1``); the system under test on core 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from benchmarks.common import commit, machine, median, receiver_script
from segflow.activate.payloads import DictProfiles
from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore
from segflow.activate.worker import DeliveryWorker
from segflow.spec import AnyChange, MembershipChange

RECEIVER = receiver_script(
    """
def keys(change):
    yield change["data"]["profile_id"]
"""
)


class Feed:
    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, body BLOB)")
        self.lock = threading.Lock()

    def append(self, change: AnyChange) -> None:
        with self.lock:
            self.con.execute(
                "INSERT INTO changes (body) VALUES (?)", (msgspec.msgpack.encode(change),)
            )

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        with self.lock:
            rows = self.con.execute(
                "SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(s, msgspec.msgpack.decode(b, type=AnyChange)) for s, b in rows]


def change(n: int) -> MembershipChange:
    return MembershipChange(profile_id=f"p{n}", segment="vip", kind="entered", at_ms=n, sequence=1)


class Baseline:
    """Poll the feed, POST each change, remember the cursor in memory."""

    def __init__(self, feed: Feed, url: str) -> None:
        self.feed, self.url, self.cursor = feed, url, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client() as client:
            while not self.stop.is_set():
                batch = self.feed.read(self.cursor, 1000)
                for seq, c in batch:
                    assert isinstance(c, MembershipChange)
                    body = {
                        "type": "segment.entered",
                        "data": {"profile_id": c.profile_id, "segment": c.segment},
                    }
                    client.post(self.url, json=body)
                    self.cursor = seq
                if not batch:
                    time.sleep(0.005)


def hanging_server() -> socket.socket:
    """A listener that never accepts: connections complete in the kernel, requests hang."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    return sock


def system(
    kind: str, tmp: Path, url: str, batch: int = 1, hang: str | None = None
) -> tuple[Feed, Any, Any]:
    feed = Feed(tmp / "feed.sqlite")
    if kind == "baseline":
        b = Baseline(feed, url)
        b.thread.start()
        return feed, b.stop.set, None
    store = DeliveryStore(tmp / "delivery.sqlite")
    svc = ActivationService(store, guard=UrlGuard(["127.0.0.1/32"]))
    svc.create_destination(
        {
            "name": "r",
            "url": url,
            "concurrency": 8,
            "batch_max": batch,
            "batch_wait_ms": 5 if batch > 1 else 0,
        }
    )
    svc.subscribe("r", "vip")
    if hang is not None:
        svc.create_destination(
            {"name": "hang", "url": hang, "concurrency": 8, "timeout_ms": 60_000}
        )
        svc.subscribe("hang", "vip")
    worker = DeliveryWorker(store, feed, DictProfiles(), guard=UrlGuard(["127.0.0.1/32"]))
    worker.start()
    return feed, worker.stop, worker


def collect(url: str, expected: int, deadline_s: float = 60) -> dict[str, float]:
    seen: dict[str, float] = {}
    end = time.monotonic() + deadline_s
    while len(seen) < expected and time.monotonic() < end:
        time.sleep(0.05)
        seen.update({p: t for p, t in httpx.get(url).json()})
    return seen


def freshness(
    kind: str, url: str, rate: int, seconds: float, hang: str | None = None
) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, achieved offered rate/s) of one run."""
    with tempfile.TemporaryDirectory() as d:
        feed, stop, worker = system(kind, Path(d), url, hang=hang)
        sent: dict[str, float] = {}
        n, start = 0, time.perf_counter()
        while n < rate * seconds:
            due = start + n / rate
            while time.perf_counter() < due:
                time.sleep(0.0002)
            sent[f"p{n}"] = time.time()
            feed.append(change(n))
            if worker is not None:
                worker.notify()
            n += 1
        offered = n / (time.perf_counter() - start)
        seen = collect(url, len(sent))
        stop()
    lat = sorted((seen[p] - t) * 1000 for p, t in sent.items() if p in seen)
    assert len(lat) == len(sent), "changes missing at the receiver"
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], offered


def throughput(kind: str, url: str, total: int, batch: int = 1) -> float:
    with tempfile.TemporaryDirectory() as d:
        feed = Feed(Path(d) / "feed.sqlite")
        for n in range(total):
            feed.append(change(n))
        t0 = time.perf_counter()
        _, stop, _ = system(kind, Path(d), url, batch)
        seen = collect(url, total)
        elapsed = time.perf_counter() - t0
        stop()
    return len(seen) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    port = 18000 + os.getpid() % 1000
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(RECEIVER)
    receiver = subprocess.Popen(["taskset", "-c", "1", sys.executable, fh.name, str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/stats")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        os.sched_setaffinity(0, {0})
        freshness("segflow", base + "/hook", 500, 0.5)  # warm-up
        rows = []
        for rate in (1000, 5000):
            results: dict[str, list[tuple[float, float, float]]] = {"segflow": [], "baseline": []}
            for _ in range(args.rounds):
                for kind in ("segflow", "baseline"):
                    results[kind].append(freshness(kind, base + "/hook", rate, args.seconds))
            s, b = results["segflow"], results["baseline"]
            ratio = median([x[1] / y[1] for x, y in zip(s, b, strict=True)])
            achieved = median([x[2] for x in s])
            rows.append(
                f"| freshness @ {rate}/s (achieved {achieved:.0f}/s) p50 / p99 ms | {median([x[0] for x in s]):.1f} / {median([x[1] for x in s]):.1f}"
                f" | {median([x[0] for x in b]):.1f} / {median([x[1] for x in b]):.1f} | {ratio:.2f} (p99) | p99 <= 50 ms |"
            )
        iso: dict[str, list[tuple[float, float, float]]] = {"alone": [], "beside": []}
        hang = hanging_server()
        hang_url = f"http://127.0.0.1:{hang.getsockname()[1]}/hook"
        for _ in range(args.rounds):
            iso["alone"].append(
                freshness("segflow", base + "/hook", 500, args.seconds, base + "/other")
            )
            iso["beside"].append(freshness("segflow", base + "/hook", 500, args.seconds, hang_url))
        hang.close()
        a, h = iso["alone"], iso["beside"]
        rows.append(
            f"| isolation: freshness @ 500/s p50 / p99 ms beside a hanging destination (segflow) vs beside a fast one (baseline)"
            f" | {median([x[0] for x in h]):.1f} / {median([x[1] for x in h]):.1f}"
            f" | {median([x[0] for x in a]):.1f} / {median([x[1] for x in a]):.1f}"
            f" | {median([x[1] / y[1] for x, y in zip(h, a, strict=True)]):.2f} (p99) | no slowdown |"
        )
        tp: dict[str, list[float]] = {"segflow": [], "segflow-batch": [], "baseline": []}
        for _ in range(args.rounds):
            tp["segflow"].append(throughput("segflow", base + "/hook", 3000))
            tp["segflow-batch"].append(throughput("segflow", base + "/hook", 3000, batch=100))
            tp["baseline"].append(throughput("baseline", base + "/hook", 3000))
        for kind in ("segflow", "segflow-batch"):
            ratio = median([x / y for x, y in zip(tp[kind], tp["baseline"], strict=True)])
            rows.append(
                f"| throughput {kind} changes/s | {median(tp[kind]):.0f} | {median(tp['baseline']):.0f} | {ratio:.2f} | - |"
            )
    finally:
        receiver.terminate()
        receiver.wait()
        os.unlink(fh.name)
    print(f"machine: {machine()}  commit: {commit()}  rounds: {args.rounds}")
    print("| measure | segflow | baseline | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
