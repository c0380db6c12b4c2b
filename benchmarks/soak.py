"""Soak: ``segflow serve`` (every role, supervised) at 70% of its sustained end-to-end rate for
10 minutes with 10 segments, and profile / members reads at up to 2,000 req/s meanwhile.

Run: ``python -m benchmarks.soak [--minutes 10] [--share 0.7] [--read-rate 2000] [--api-port]``

``--api-port`` runs the server with ``segflow serve --api-port`` (the admin API in a process
of its own on a second port, docs/serve.md "Reads beside ingest") and reads from that port.

One server, on a data directory made by segflow's own CLI (a source, an admin token, the 10
segments of :data:`benchmarks.rules.TEN_RULES`), nothing pinned (the supervisor sizes its
processes to the machine). Two phases on the same server:

1. **Sustained rate**: the load generator (:mod:`benchmarks.loadgen`, closed loop, 16
   keep-alive connections, ``/v1/batch`` of 100 events stamped now) for ``--probe-seconds``,
   then wait until the processor's lag is 0: the sustained end-to-end rate is the events
   acknowledged / (load + drain time), as ``benchmarks.end_to_end`` measures it. ``--rate``
   skips the probe and uses the given events/s.
2. **Soak**: the same load paced at ``--share`` of that rate for ``--minutes``. Meanwhile, from
   the driver's process: the processor's lag every 0.5 s (``GET /api/v1/status``); the resident
   memory of every process of the server's session every 5 s (``/proc/PID/status`` VmRSS,
   summed); and reads paced at ``--read-rate`` req/s over 8 connections, alternating
   ``GET /api/v1/profiles/user_id:{id}`` (a user the probe phase sent) and
   ``GET /api/v1/segments/{name}/members?limit=50`` (the 10 segments in turn), each timed.

Reported: the offered and achieved rates, failed ingest requests, the lag's maximum and its
value at the end and the drain time after it, RSS at the first and the last minute (medians of
the samples) and its maximum, the reads' p50 / p99 / max and their errors (any answer but 200).
The load generator, the readers and the server share the machine's cores: on 2 cores the
readers' own CPU is part of what the server competes with (reported as the driver's CPU share).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import itertools
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import commit, machine, median
from benchmarks.end_to_end import (
    PER_REQUEST,
    Bodies,
    LagPoller,
    ServerFailed,
    _sigterm,
    event_pool,
    free_port,
    kill_all,
    launch,
    make_template,
    own_cpu,
    stop,
    tail,
    wait_lag_zero,
    wait_ready,
)
from benchmarks.loadgen import exchange, run_load
from benchmarks.rules import TEN_RULES


def session_rss_mb(session: int) -> dict[str, float]:
    """Resident memory (MB) of each live process of a session, by ``pid command``."""
    found: dict[str, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat[stat.rfind(")") + 2 :].split()[3]) != session:
                continue
            argv = [
                a.decode(errors="replace")
                for a in Path(entry.path, "cmdline").read_bytes().split(b"\0")
            ]
            role = argv[argv.index("--role") + 1] if "--role" in argv[:-1] else "supervisor"
            label = f"{entry.name} {role}"
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[label] = int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            continue
    return found


class RssSampler(threading.Thread):
    def __init__(self, session: int, every_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.session, self.every_s = session, every_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB in all)
        self.first: dict[str, float] = {}  # MB per process at the first sample, and the last
        self.last: dict[str, float] = {}
        self.done = threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        while not self.done.is_set():
            at = time.perf_counter() - self.start_time
            per_process = session_rss_mb(self.session)
            self.first = self.first or per_process
            self.last = per_process
            self.samples.append((at, sum(per_process.values())))
            self.done.wait(self.every_s)

    def stop(self) -> None:
        self.done.set()
        self.join(30)


@dataclass
class Reads:
    latencies_ms: list[float] = field(default_factory=list)  # from the scheduled time
    service_ms: dict[str, list[float]] = field(default_factory=dict)  # send -> answer, per kind
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _reader(
    port: int, token: str, paths: list[str], offset: int, interval: float, deadline: float,
    out: Reads,
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    scheduled = time.perf_counter() + interval * offset / 8
    try:
        for n in itertools.count(offset, 8):
            scheduled += interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if scheduled >= deadline or time.perf_counter() >= deadline:
                return  # behind schedule at the end: the reads left are not sent
            path = paths[n % len(paths)]
            sent = time.perf_counter()
            request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
            status = await exchange(reader, writer, request.encode())
            out.statuses[status] = out.statuses.get(status, 0) + 1
            if status != 200:
                out.errors += 1
            done = time.perf_counter()
            out.latencies_ms.append((done - scheduled) * 1000)
            kind = "members" if path.endswith("limit=50") else "profile"
            out.service_ms.setdefault(kind, []).append((done - sent) * 1000)
    finally:
        writer.close()


def run_reads(port: int, token: str, paths: list[str], rate: float, seconds: float) -> Reads:
    """``paths`` in turn at ``rate`` req/s over 8 keep-alive connections, for ``seconds``."""
    out = Reads()

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        interval = 8 / rate
        await asyncio.gather(
            *(_reader(port, token, paths, i, interval, deadline, out) for i in range(8))
        )

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return out


def start_serve(
    template: Path, log: Path, *, api_port: bool
) -> tuple[subprocess.Popen[bytes], int, int]:
    """``segflow serve`` (supervised, nothing pinned) on ``template``, ready: the process, the
    collect port and the API's port (the same one unless ``api_port``: ``--api-port``)."""
    port = free_port()
    api = free_port() if api_port else port
    proc = launch(
        [sys.executable, "-m", "segflow.cli.main", "serve", "--data-dir", str(template),
         "--port", str(port), *(["--api-port", str(api)] if api_port else [])],
        log, "none",
    )  # fmt: skip
    wait_ready(proc, port, "/readyz", log)
    wait_ready(proc, api, "/api/v1/health", log)
    return proc, port, api


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--share", type=float, default=0.7, help="of the sustained e2e rate")
    ap.add_argument("--rate", type=float, help="events/s to offer (skips the probe phase)")
    ap.add_argument("--probe-seconds", type=float, default=20.0)
    ap.add_argument("--read-rate", type=float, default=2000.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--api-port", action="store_true", help="serve --api-port; read there")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    atexit.register(kill_all)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-soak-"))
    log = root / "serve.log"
    proc = None
    try:
        bodies = Bodies(event_pool(args.users))
        template, key, token = make_template(root)
        proc, port, api_port = start_serve(template, log, api_port=args.api_port)
        counter = itertools.count()
        poller = LagPoller(api_port, token)
        if args.rate:
            sustained = args.rate
            run_load(port, "/v1/batch", key, bodies, counter, seconds=5, connections=4)
            wait_lag_zero(poller, 0, timeout=600)
        else:
            probe = run_load(port, "/v1/batch", key, bodies, counter,
                             seconds=args.probe_seconds, connections=args.connections)  # fmt: skip
            loaded = time.perf_counter()
            wait_lag_zero(poller, probe.ok * PER_REQUEST, timeout=900)
            drain = time.perf_counter() - loaded
            sustained = probe.ok * PER_REQUEST / (probe.seconds + drain)
            print(f"sustained e2e: {sustained:,.0f} events/s ({probe.ok * PER_REQUEST:,} "
                  f"events, load {probe.seconds:.1f} s + drain {drain:.1f} s)", file=sys.stderr)  # fmt: skip
        offered = sustained * args.share
        seconds = args.minutes * 60
        rng = random.Random(5)
        known = [u for u in range(args.users) if u % 4 != 0]
        paths = []
        for i in range(2000):
            if i % 2:
                paths.append(f"/api/v1/profiles/user_id:user-{rng.choice(known)}")
            else:
                name = list(TEN_RULES)[(i // 2) % len(TEN_RULES)]
                paths.append(f"/api/v1/segments/{name}/members?limit=50")
        rss = RssSampler(proc.pid)
        poller.start_time = rss.start_time = time.perf_counter()
        poller.start()
        rss.start()
        reads_out: list[Reads] = []
        reader = threading.Thread(
            target=lambda: reads_out.append(
                run_reads(api_port, token, paths, args.read_rate, seconds)
            ),
            daemon=True,
        )
        cpu0, t0 = own_cpu(), time.perf_counter()
        reader.start()
        try:
            load = run_load(port, "/v1/batch", key, bodies, counter, seconds=seconds,
                            connections=args.connections, rate=offered / PER_REQUEST)  # fmt: skip
            reader.join(seconds + 120)
        finally:
            poller.stop()
        ended = time.perf_counter()
        driver_cpu = (own_cpu() - cpu0) / (ended - t0)
        lag_end = wait_lag_zero(poller, 0, timeout=900)
        drain = time.perf_counter() - ended
        rss.stop()
        poller.client.close()
        if proc.poll() is not None:
            raise ServerFailed(f"the server exited with {proc.returncode}:\n{tail(log)}")
    except ServerFailed as exc:
        kill_all()
        sys.exit(f"soak: {exc}")
    except KeyboardInterrupt:
        kill_all()
        sys.exit(130)
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)
    reads = reads_out[0] if reads_out else Reads()
    lags = [lag for _, lag in poller.samples]
    first = [mb for at, mb in rss.samples if at <= 60]
    last = [mb for at, mb in rss.samples if at >= seconds - 60]
    achieved = load.ok * PER_REQUEST / load.seconds
    read_rate = len(reads.latencies_ms) / seconds
    print(f"\nmachine: {machine()}; commit {commit()}; load average before "
          f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}; "
          f"{'--api-port' if args.api_port else 'one port'}")  # fmt: skip
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| offered / achieved events/s ({args.share:.0%} of the sustained {sustained:,.0f}), "
          f"{args.minutes:g} min | {offered:,.0f} / {achieved:,.0f} | - |")  # fmt: skip
    print(f"| ingest requests failed | {load.failed} | 0 |")
    print(f"| processor lag: max / at the end (drain s) | {max(lags, default=0):,} / "
          f"{lag_end:,} ({drain:.1f}) | bounded |")  # fmt: skip
    print(f"| RSS MB, all processes: first minute / last minute (medians) / max | "
          f"{median(first) if first else float('nan'):,.0f} / "
          f"{median(last) if last else float('nan'):,.0f} / "
          f"{max((mb for _, mb in rss.samples), default=0):,.0f} | flat |")  # fmt: skip
    lat = reads.latencies_ms
    print(f"| reads (profiles + members) p50 / p99 / max ms at {read_rate:,.0f} req/s "
          f"(offered {args.read_rate:,.0f}) | {percentile(lat, 0.5):.1f} / "
          f"{percentile(lat, 0.99):.1f} / {max(lat, default=float('nan')):.1f} | p99 <= 5 ms |")  # fmt: skip
    for kind, values in sorted(reads.service_ms.items()):
        print(f"| {kind} reads, send -> answer p50 / p99 / max ms | "
              f"{percentile(values, 0.5):.1f} / {percentile(values, 0.99):.1f} / "
              f"{max(values):.1f} | - |")  # fmt: skip
    print(f"| read errors (answers but 200) | {reads.errors} {dict(sorted(reads.statuses.items()))}"
          " | 0 |")  # fmt: skip
    print(f"| driver (load generator + readers) CPU share | {driver_cpu:.2f} cores | - |")
    print("\nRSS MB per process, first sample -> last:")
    for label in sorted(set(rss.first) | set(rss.last)):
        print(f"  {rss.first.get(label, 0):7,.0f} -> {rss.last.get(label, 0):7,.0f}  {label}")
    if statistics.mean(lags or [0]) > 0:
        print(f"\nlag samples (s, events), every 30 s: "
              f"{[s for s in poller.samples if int(s[0]) % 30 == 0][:40]}")  # fmt: skip


if __name__ == "__main__":
    main()
