"""The HTTP worker's CPU per ``/v1/batch`` request under the supervised ``segflow serve``
(every role running, each in its own process): what the collector costs the machine per event,
HTTP server, event loop, garbage collector and the log's writer thread included.

``segflow serve`` (the supervisor, its children) runs on core 0 (``taskset -c 0``), the load
generator on core 1; for ``--seconds`` the load generator sends batches of 100 ~600-byte
events on 16 connections, and the HTTP worker's user + system CPU seconds
(``/proc/PID/stat``) over that time are divided by the requests answered 200. CPU time, so the
machine's other jobs count only through cache and scheduling effects.

One tree: ``python -m benchmarks.worker_cpu``. Before/after, in one invocation:
``python -m benchmarks.worker_cpu --baseline-src ../main/src`` alternates the two trees for
``--rounds`` rounds (a fresh data directory per server) and reports each median and the
median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, commit, machine, tree_env
from benchmarks.ingest import free_port, wait_ready
from benchmarks.loadgen import run_load
from benchmarks.payloads import batch_template, fill


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_worker(supervisor: int) -> int:
    """The pid of the supervisor's child that serves HTTP (its command has ``collect``)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat[stat.rfind(")") + 2 :].split()[1])
            if parent == supervisor and b"--role" in cmd and b"collect" in _role(cmd):
                return int(entry.name)
        time.sleep(0.1)
    raise RuntimeError("no HTTP worker found")


def _role(cmd: list[bytes]) -> bytes:
    return cmd[cmd.index(b"--role") + 1]


def one_round(src: str, seconds: float, counter: itertools.count[int]) -> float:
    """Seconds of the HTTP worker's CPU a request, one server from tree ``src``."""
    env = tree_env(src)
    with tempfile.TemporaryDirectory(prefix="worker-cpu-") as tmp:
        data = Path(tmp) / "data"
        created = subprocess.run(
            [sys.executable, "-m", "segflow.cli.main", "sources", "create", "bench",
             "--data-dir", str(data)],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        key = created.stdout.strip().splitlines()[-1]
        port = free_port()
        proc = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "segflow.cli.main", "serve",
             "--data-dir", str(data), "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(port)
            worker = http_worker(proc.pid)
            template = batch_template()
            bodies = lambda n: fill(template, n)  # noqa: E731
            run_load(port, "/v1/batch", key, bodies, counter, seconds=1.0, connections=16)
            before = cpu_seconds(worker)
            out = run_load(port, "/v1/batch", key, bodies, counter, seconds=seconds, connections=16)
            used = cpu_seconds(worker) - before
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if out.failed or not out.ok:
        raise RuntimeError(f"{out.failed} requests failed, {out.ok} answered")
    return used / out.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", help="another tree's src/ to compare against")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    counter = itertools.count()
    here = str(ROOT / "src")
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        if args.baseline_src:
            theirs.append(one_round(args.baseline_src, args.seconds, counter))
        ours.append(one_round(here, args.seconds, counter))
    load = os.getloadavg()[0]
    print(f"machine: {machine()}; load {load:.1f}; {args.rounds} rounds of {args.seconds:g} s")
    print(f"this tree us a request per round: {[round(o * 1e6) for o in ours]}")
    mine = statistics.median(ours)
    if not theirs:
        print(f"| {commit()} | {mine * 1e6:,.0f} us a request | {mine * 1e4:.2f} us an event |")
        return
    print(f"baseline us a request per round: {[round(t * 1e6) for t in theirs]}")
    ratio = statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
    base = statistics.median(theirs)
    print(
        f"| {commit()} | {mine * 1e6:,.0f} us a request ({mine * 1e4:.2f} us an event) | baseline"
        f" {base * 1e6:,.0f} us ({base * 1e4:.2f} us an event) | {ratio:.2f}x less CPU |"
    )


if __name__ == "__main__":
    main()
