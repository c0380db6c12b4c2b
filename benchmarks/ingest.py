"""Ingest: events/s durably accepted through ``/v1/batch`` (100 events of ~500 bytes per
request), segflow vs FastAPI + pydantic v2 + uvicorn writing to SQLite (``synchronous=FULL``).

Both servers run pinned to core 0 (``taskset -c 0``), the load generator to core 1. Rounds
alternate segflow and the baseline. Reported: median events/s and ratio at saturation; p50/p99
latency of segflow and the baseline at 50% of segflow's maximum request rate; single-event
``/v1/track`` requests/s.

Run: ``python -m benchmarks.ingest [--rounds 5] [--seconds 2] [--collect-only] [--granian]
[--supervised]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks.common import commit, machine, median
from benchmarks.loadgen import Outcome, run_load
from benchmarks.payloads import batch_template, event_json, fill


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str = "/health") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def start_segflow(
    root: Path, roles: str | None = None, *, supervised: bool = False
) -> tuple[subprocess.Popen[bytes], int, str]:
    """``segflow serve --single-process`` pinned to core 0; ``roles`` (e.g. ``"collect"``)
    runs only those roles (default: all of them, processor and loader included);
    ``supervised``: the default ``segflow serve`` instead (a supervisor and its role
    processes, every one pinned to core 0)."""
    data = root / ("segflow" if roles is None else f"segflow-{roles}")
    if supervised:
        data = root / "segflow-supervised"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "segflow.cli.main",
            "sources",
            "create",
            "bench",
            "--data-dir",
            str(data),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    key = out.stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "segflow.cli.main",
            "serve",
            # the budget is events/s on one core: one process, pinned
            *([] if supervised else ["--single-process"]),
            "--data-dir",
            str(data),
            "--port",
            str(port),
            *(["--role", roles] if roles else []),
        ]
    )
    wait_ready(port)
    return proc, port, key


def start_segflow_granian(root: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """The same segflow app under granian (Rust HTTP server), to choose the server by measuring."""
    data = root / "granian"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "segflow.cli.main",
            "sources",
            "create",
            "bench",
            "--data-dir",
            str(data),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    key = out.stdout.strip().splitlines()[-1]
    port = free_port()
    granian = str(Path(sys.executable).parent / "granian")
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            granian,
            "--interface",
            "asgi",
            "--factory",
            "--loop",
            "uvloop",
            "--http",
            "1",
            "--no-ws",
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "segflow.server.asgi:create_app",
        ],
        env={**os.environ, "SEGFLOW_SERVER__DATA_DIR": str(data)},
    )
    wait_ready(port)
    return proc, port, key


def start_baseline(root: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "benchmarks.baselines.fastapi_ingest",
            str(root / "baseline.sqlite"),
            str(port),
        ]
    )
    wait_ready(port, "/docs")
    return proc, port, "bench"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--granian", action="store_true", help="also run segflow under granian")
    parser.add_argument(
        "--supervised",
        action="store_true",
        help="also run the default supervised segflow serve (role processes, all on core 0)",
    )
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="also run segflow with only the collect role (no processor, loader, delivery)",
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-"))
    template = batch_template()
    single = event_json(__import__("random").Random(3), "@@@@@@@@@@")
    counter = itertools.count()
    batch_bodies = lambda n: fill(template, n)  # noqa: E731
    single_bodies = lambda n: fill(single, n)  # noqa: E731
    servers = {"segflow": start_segflow(root), "baseline": start_baseline(root)}
    if args.granian:
        servers["segflow-granian"] = start_segflow_granian(root)
    if args.collect_only:
        servers["segflow-collect"] = start_segflow(root, "collect")
    if args.supervised:
        servers["segflow-supervised"] = start_segflow(root, supervised=True)
    results: dict[str, dict[str, list[float]]] = {name: {"eps": [], "rps1": []} for name in servers}
    ratios: list[float] = []
    try:
        for _, port, key in servers.values():  # warm-up
            run_load(
                port,
                "/v1/batch",
                key,
                batch_bodies,
                counter,
                seconds=0.5,
                connections=args.connections,
            )
        for _ in range(args.rounds):
            for name, (_, port, key) in servers.items():
                out = run_load(
                    port,
                    "/v1/batch",
                    key,
                    batch_bodies,
                    counter,
                    seconds=args.seconds,
                    connections=args.connections,
                )
                results[name]["eps"].append(out.ok * 100 / out.seconds)
                out = run_load(
                    port,
                    "/v1/track",
                    key,
                    single_bodies,
                    counter,
                    seconds=args.seconds / 2,
                    connections=32,
                )
                results[name]["rps1"].append(out.ok / out.seconds)
            ratios.append(results["segflow"]["eps"][-1] / results["baseline"]["eps"][-1])
        max_rps = median(results["segflow"]["eps"]) / 100
        latency: dict[str, Outcome] = {}
        for name, (_, port, key) in servers.items():
            latency[name] = run_load(
                port,
                "/v1/batch",
                key,
                batch_bodies,
                counter,
                seconds=args.seconds * 1.5,
                connections=args.connections,
                rate=max_rps * 0.5,
            )
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)
    report(args, results, ratios, latency, max_rps)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, list[float]]],
    ratios: list[float],
    latency: dict[str, Outcome],
    max_rps: float,
) -> None:
    s, b = results["segflow"], results["baseline"]
    ls, lb = latency["segflow"].latencies_ms, latency["baseline"].latencies_ms
    print(
        f"machine: {machine()}; server on core 0, load on core 1; {args.rounds} rounds x {args.seconds}s, "
        f"{args.connections} connections; per-round events/s segflow {[round(x) for x in s['eps']]}, "
        f"baseline {[round(x) for x in b['eps']]}"
    )
    print(
        "| date | commit | segflow events/s | baseline events/s | ratio | segflow p50/p99/max ms @50% | "
        "baseline p50/p99/max ms @same rate | segflow single-event req/s | baseline single-event req/s | target |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {datetime.now(UTC):%Y-%m-%d} | {commit()} | {median(s['eps']):,.0f} | {median(b['eps']):,.0f} | "
        f"{statistics.median(ratios):.2f}x | {pct(ls, 0.5):.1f}/{pct(ls, 0.99):.1f}/{max(ls or [0]):.1f} "
        f"({max_rps * 0.5:.0f} req/s) | {pct(lb, 0.5):.1f}/{pct(lb, 0.99):.1f}/{max(lb or [0]):.1f} | "
        f"{median(s['rps1']):,.0f} | {median(b['rps1']):,.0f} | >= 150k ev/s, >= 3x, p99 <= 10 ms |"
    )
    print(json.dumps({"latency_failed": {k: v.failed for k, v in latency.items()}}))
    if "segflow-collect" in results:
        c = results["segflow-collect"]
        print(
            f"collect role only: batch events/s {median(c['eps']):,.0f} vs all roles "
            f"{median(s['eps']):,.0f}; single-event req/s {median(c['rps1']):,.0f} "
            f"vs {median(s['rps1']):,.0f}"
        )
    if "segflow-supervised" in results:
        v = results["segflow-supervised"]
        per_round = [x / y for x, y in zip(v["eps"], b["eps"], strict=True)]
        print(
            f"supervised (role processes): batch events/s {median(v['eps']):,.0f} "
            f"({statistics.median(per_round):.2f}x the baseline) vs single process "
            f"{median(s['eps']):,.0f}; single-event req/s {median(v['rps1']):,.0f}"
        )
    if "segflow-granian" in results:
        g = results["segflow-granian"]
        print(
            f"granian: batch events/s {median(g['eps']):,.0f} vs uvicorn {median(s['eps']):,.0f}; "
            f"single-event req/s {median(g['rps1']):,.0f} vs uvicorn {median(s['rps1']):,.0f}"
        )


if __name__ == "__main__":
    main()
