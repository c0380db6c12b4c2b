"""Processor throughput (identity + trait updates, one core) and profile-lookup latency.

    python -m benchmarks.processor [--events 100000] [--people 60000] [--rounds 5]
                                   [--lookup-seconds 4] [--rate 2000] [--skip-lookup]
                                   [--rules 0|10|100] [--cpu-stages]
                                   [--log memory|sqlite] [--sdk-context]

``--rules``: segflow's processor also evaluates the rules benchmark's 10 or 100 segment rules
(the clock at the stream's end, so windows and timers are live); the baseline stays identity
only, so the ratio is the cost of the rules on top of stitching.

``--log sqlite``: segflow reads a real embedded log (written once, before the rounds), so its
``read`` stage counts the log's read and the records' decoding; ``--sdk-context`` gives every
event analytics.js's context, the bulk of a real event that the processor does not read.

Throughput: segflow's ``Processor`` on its default state store (RocksDB in ``state/``, every
commit's WAL synced; ``--store sqlite``: ``state.sqlite``, ``synchronous=FULL``), default batch,
the garbage collector tuned as the running processor tunes it (``Processor.gc_policy``), vs
``baselines/processor_sqlite.py`` (the same stitching and profile updates written straight
in SQLite, with less work: no limits, no merge records, no outbox), interleaved, from the same
pre-decoded log records (log reads are not measured). The stream is seeded: 70% anonymous
traffic (anonymous_id only), logins (identify with email), server-side events by user_id,
support tickets by email.

Lookup: each API served by one uvicorn process pinned to core 0 (segflow: Starlette +
``profile_routes`` + token auth; baseline: FastAPI + pydantic on the baseline's tables),
loaded by ``wrk`` pinned to core 1 at a capped offered rate (20 connections, each waiting
``20_000 / rate - 2`` ms between requests; the achieved rate is reported),
looking up random known ``user_id``s; p50/p99/max as wrk reports them.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.baselines.processor_sqlite import SqliteBaseline
from benchmarks.common import evaluator
from segflow.clock import ManualClock
from segflow.log.base import Record, partition_for
from segflow.spec import Event

PARTITIONS = 8
BATCH = 500  # records per partition per transaction, as segflow's default
T0 = 1_700_000_000_000


SDK_CONTEXT = {  # what analytics.js sends with every event (benchmarks.payloads)
    "ip": "203.0.113.7",
    "library": {"name": "analytics.js", "version": "next-1.70.0"},
    "locale": "en-US",
    "page": {"path": "/products/shoes", "url": "https://shop.example/products/shoes"},
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
}


def make_stream(n: int, people: int, seed: int = 7, sdk: bool = False) -> list[Event]:
    """Seeded realistic traffic: 70% anonymous, ~20% identified, logins link devices to users.
    ``sdk``: every event carries analytics.js's context as well (~300 bytes more)."""
    out = _stream(n, people, seed)
    if sdk:
        out = [msgspec.structs.replace(e, context={**SDK_CONTEXT, **e.context}) for e in out]
    return out


def _stream(n: int, people: int, seed: int) -> list[Event]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        p = rnd.randrange(people)
        device = f"d{p}-{rnd.randrange(2)}"
        ts = T0 + i * 50
        common = {
            "message_id": f"m{i}",
            "source_id": "web",
            "timestamp_ms": ts,
            "received_at_ms": ts,
        }
        r = rnd.random()
        if r < 0.70:
            out.append(
                Event(
                    type="track",
                    anonymous_id=device,
                    event=rnd.choice(("Viewed", "Added", "Searched")),
                    properties={"i": i},
                    **common,
                )
            )
        elif r < 0.80:
            out.append(
                Event(
                    type="identify",
                    anonymous_id=device,
                    user_id=f"user-{p}",
                    traits={"email": f"u{p}@example.com", "plan": rnd.choice(("free", "pro"))},
                    **common,
                )
            )
        elif r < 0.97:
            out.append(
                Event(
                    type="track",
                    user_id=f"user-{p}",
                    anonymous_id=device,
                    event="Order Completed",
                    properties={"revenue": rnd.randrange(100)},
                    **common,
                )
            )
        else:
            out.append(
                Event(
                    type="track",
                    anonymous_id=f"srv-{i}",
                    event="Support Ticket Created",
                    context={"traits": {"email": f"u{p}@example.com"}},
                    **common,
                )
            )
    return out  # fmt: skip


class ListLog:
    """Pre-decoded records in memory, partitioned like the real log."""

    def __init__(self, events: list[Event]) -> None:
        self.records: list[list[Record]] = [[] for _ in range(PARTITIONS)]
        for e in events:
            p = partition_for(e.identity_key, PARTITIONS)
            self.records[p].append(Record(p, len(self.records[p]), e))

    @property
    def partitions(self) -> int:
        return PARTITIONS

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self.records[partition][offset : offset + max_records]


def sqlite_log(events: list[Event], path: Path) -> Any:
    """The events appended to a real embedded log at ``path`` (the processor then reads and
    decodes its records, as ``segflow serve`` does), partitioned like :class:`ListLog`."""
    from segflow.log.sqlite import SqliteEventLog

    log = SqliteEventLog(path, partitions=PARTITIONS)
    for start in range(0, len(events), 5000):
        log.append(events[start : start + 5000])
    return log


STAGES: dict[str, list[float]] = {}  # us per event of each stage, per round


def open_store(path: Path, kind: str) -> Any:
    """segflow's state store for a run: ``rocksdb`` (``path/state``) or ``sqlite``."""
    from segflow.stream import SqliteStateStore
    from segflow.stream.state.rocksdb import RocksStateStore

    if kind == "rocksdb":
        return RocksStateStore(path / "state")
    return SqliteStateStore(path / "state.sqlite")


def timed_drain(proc: Any) -> float:
    """Seconds for ``proc`` to process everything in its log, with the cyclic GC tuned as the
    running processor tunes it (``Processor.start``)."""
    from segflow.stream.processor import tune_gc

    before = gc.get_threshold()
    policy = getattr(proc, "gc_policy", None)  # a checkout before it: the threshold only
    if policy is not None:
        policy.start()
    else:
        tune_gc(proc.settings.gc_threshold)
    t0 = time.perf_counter()
    try:
        while proc.run_once() > 0:
            pass
        return time.perf_counter() - t0
    finally:
        if policy is not None:
            policy.stop()
        gc.set_threshold(*before)


def run_segflow(
    log: Any,
    path: Path,
    rules: dict[str, str] | None = None,
    store_kind: str = "rocksdb",
    dedupe_window_ms: int = 0,
    end_ms: int | None = None,
) -> float:
    """Seconds for a fresh processor to drain ``log`` (a :class:`ListLog` or a real log: then
    ``end_ms``, the clock's time, the stream's last timestamp, must be given)."""
    from segflow.rules import compile_segments
    from segflow.stream import Processor, ProcessorSettings

    store = open_store(path, store_kind)
    evaluator = evaluator_for(compile_segments(rules)) if rules else None
    end = end_ms or max(r.event.timestamp_ms for part in log.records for r in part)
    settings = ProcessorSettings(batch_size=BATCH, dedupe_window_ms=dedupe_window_ms)
    proc = Processor(log, store, evaluator, ManualClock(end), settings=settings)
    elapsed = timed_drain(proc)
    events = proc.stages["events"] or 1
    for stage in ("read", "identity", "rules", "commit"):
        STAGES.setdefault(stage, []).append(proc.stages[stage] / events * 1e6)
    STAGES.setdefault("other", []).append(
        (elapsed - sum(proc.stages[s] for s in ("read", "identity", "rules", "commit")))
        / events
        * 1e6
    )
    store.close()
    return elapsed


def cpu_stages() -> None:
    """Make ``Processor.stages`` count the thread's CPU time: the processor module reads
    ``time.perf_counter`` for its stages, so it gets a ``time`` whose ``perf_counter`` is
    ``thread_time`` (any checkout's processor, so before/after can run the same benchmark)."""
    import types

    import segflow.stream.processor as processor

    clock = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if k[:2] != "__"})
    clock.perf_counter = time.thread_time
    processor.time = clock  # type: ignore[assignment]


def evaluator_for(program: Any) -> Any:
    """The evaluator the processor runs for ``program`` (the compiled kernel when built)."""
    try:
        from segflow.rules.incremental.kernel import compile_kernel
    except ImportError:  # before the kernel
        return program
    return compile_kernel(program)


def run_baseline(log: ListLog, path: Path) -> float:
    # the same order segflow consumes: batch_size records of each partition in turn
    records: list[Record] = []
    offsets = [0] * PARTITIONS
    while True:
        chunk = [r for p in range(PARTITIONS) for r in log.read(p, offsets[p], BATCH)]
        if not chunk:
            break
        for p in range(PARTITIONS):
            offsets[p] += len(log.read(p, offsets[p], BATCH))
        records.extend(chunk)
    base = SqliteBaseline(path)
    t0 = time.perf_counter()
    base.process(records, batch=BATCH * PARTITIONS)
    elapsed = time.perf_counter() - t0
    base.close()
    return elapsed


def state_stats(path: Path, store_kind: str) -> tuple[int, float, float, float]:
    """(profiles, state bytes on disk per profile, mean encoded profile bytes, mean rule-state
    bytes per profile)."""
    from segflow.profiles import decode_profile
    from segflow.stream import SqliteStateStore
    from segflow.stream.state.base import iter_scan
    from segflow.stream.state.rocksdb import RocksStateStore

    if store_kind == "rocksdb":
        store: Any = RocksStateStore(path / "state")
        store.compact()  # what the data is, not the memtable's and WAL's transient copies
        where = path / "state"
    else:
        store = SqliteStateStore(path / "state.sqlite")
        store.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        where = path / "state.sqlite"
    reader = store.reader()
    rows = [v for _, v in iter_scan(reader, "profile", "", "\U0010ffff", page=5000)]
    store.close()
    size = (
        sum(f.stat().st_size for f in where.rglob("*")) if where.is_dir() else where.stat().st_size
    )
    n = len(rows)
    rule_bytes = sum(len(decode_profile(v).rule_state or b"") for v in rows)
    return n, size / n, sum(map(len, rows)) / n, rule_bytes / n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(kind: str, data_dir: Path, port: int, token_file: Path) -> None:
    """Run one API (``segflow`` or ``baseline``) on ``port`` (child process entry point)."""
    import uvicorn

    token = token_file.read_text().strip()
    if kind == "segflow":
        from starlette.applications import Starlette

        from segflow.api.auth import authorizer
        from segflow.api.profiles import profile_routes
        from segflow.catalog.tokens import TokenStore
        from segflow.stream import ProfileReader, SqliteStateStore
        from segflow.stream.state.rocksdb import RocksStateStore

        store: Any = (
            RocksStateStore(data_dir / "state")
            if (data_dir / "state").exists()
            else SqliteStateStore(data_dir / "state.sqlite")
        )
        reader = ProfileReader(store.reader(), log=None)  # type: ignore[arg-type]
        app = Starlette(
            routes=profile_routes(reader, authorizer(TokenStore(data_dir / "catalog.sqlite")))
        )
    else:
        from benchmarks.baselines.processor_sqlite import baseline_app

        app = baseline_app(data_dir / "baseline.sqlite", token)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


LUA = """
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local delay_ms = tonumber(os.getenv("DELAY_MS"))
request = function() return wrk.format("GET", "/api/v1/profiles/user_id:" .. ids[math.random(#ids)]) end
delay = function() return delay_ms end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", latency:percentile(50), latency:percentile(99),
    latency.max, summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def lookup_round(
    kind: str, data_dir: Path, seconds: int, rate: int, env: dict[str, str]
) -> dict[str, float]:
    port = _free_port()
    token_file = data_dir / ("token" if kind == "segflow" else "baseline_token")
    cmd = [
        "taskset",
        "-c",
        "0",
        sys.executable,
        "-m",
        "benchmarks.processor",
        "--serve",
        kind,
        str(data_dir),
        str(port),
        str(token_file),
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:  # wait until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        conns = 20
        wrk_env = {
            **env,
            "TOKEN": token_file.read_text().strip(),
            "DELAY_MS": str(max(1, 1000 * conns // rate - 2)),
        }
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "wrk",
                "-t1",
                f"-c{conns}",
                f"-d{seconds}s",
                "-s",
                str(data_dir / "lookup.lua"),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            env=wrk_env,
            check=True,
        ).stdout
    finally:
        server.terminate()
        server.wait()
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    p50, p99, mx, reqs, dur_us, errors = (int(x) for x in line.split()[1:])
    return {
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "max_ms": mx / 1000,
        "rps": reqs / (dur_us / 1e6),
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--people", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lookup-seconds", type=int, default=4)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--skip-lookup", action="store_true")
    ap.add_argument(
        "--rules",
        type=int,
        choices=(0, 10, 100),
        default=0,
        help="segment rules on segflow's side (benchmarks.rules' sets); the baseline has none",
    )
    ap.add_argument(
        "--store", choices=("rocksdb", "sqlite"), default="rocksdb", help="segflow's state store"
    )
    ap.add_argument(
        "--dedupe",
        action="store_true",
        help="segflow drops message ids seen within 24 h (stream.dedupe, as with the kafka driver)",
    )
    ap.add_argument(
        "--cpu-stages",
        action="store_true",
        help="time the processor's stages in the thread's CPU time (time.thread_time) instead "
        "of the wall clock, which on a shared machine counts other processes' time too "
        "(events/s stay wall-clock)",
    )
    ap.add_argument(
        "--log",
        choices=("memory", "sqlite"),
        default="memory",
        help="segflow reads pre-decoded records (memory) or a real embedded log (sqlite: the "
        "read stage then counts the log read and decoding; the baseline stays pre-decoded)",
    )
    ap.add_argument(
        "--sdk-context",
        action="store_true",
        help="every event carries analytics.js's context (ip, library, page, userAgent)",
    )
    ap.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), int(args.serve[2]), Path(args.serve[3]))
        return
    if args.cpu_stages:
        cpu_stages()
    os.sched_setaffinity(0, {0})
    from benchmarks.rules import TEN_RULES, hundred_rules

    rules = {0: {}, 10: TEN_RULES, 100: hundred_rules()}[args.rules]
    events = make_stream(args.events, args.people, sdk=args.sdk_context)
    log = ListLog(events)
    tmp = Path(tempfile.mkdtemp(prefix="segflow-bench-proc-"))
    source = sqlite_log(events, tmp / "events.log") if args.log == "sqlite" else log
    end_ms = max(e.timestamp_ms for e in events)
    try:
        ours, theirs, ratios = [], [], []
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            for p in tmp.glob("*.sqlite*"):
                p.unlink()
            shutil.rmtree(tmp / "state", ignore_errors=True)
            window = 86_400_000 if args.dedupe else 0
            s = run_segflow(source, tmp, rules, args.store, window, end_ms)
            b = run_baseline(log, tmp / "baseline.sqlite")
            if rnd == 0:
                continue
            ours.append(args.events / s)
            theirs.append(args.events / b)
            ratios.append(b / s)
            print(
                f"round {rnd}: segflow {args.events / s:,.0f} ev/s, baseline {args.events / b:,.0f} ev/s",
                file=sys.stderr,
            )
        if rnd_stages := {k: statistics.median(v[1:] or v) for k, v in STAGES.items()}:
            print(
                "stages, us per event (median of rounds): "
                + ", ".join(f"{k} {v:.2f}" for k, v in rnd_stages.items()),
                file=sys.stderr,
            )
        profiles, file_bpp, enc_bpp, rule_bpp = state_stats(tmp, args.store)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        print(
            f"\nmachine: {machine}; {args.events:,} events, {profiles:,} profiles; peak RSS {rss_mb:,.0f} MB"
        )
        print(evaluator())
        print("| benchmark | segflow | baseline | ratio (median of rounds) | target |")
        print("| --- | --- | --- | --- | --- |")
        what = f"identity + {args.rules} rules (baseline: identity, no rules)" if rules else ""
        target = {0: ">= 200,000", 10: ">= 200,000", 100: ">= 50,000"}[args.rules]
        print(
            f"| processor events/s, 1 core {what} | {statistics.median(ours):,.0f} | {statistics.median(theirs):,.0f} | {statistics.median(ratios):.2f}x | {target} |"
        )
        print(
            f"| state bytes per profile (file / encoded profile) | {file_bpp:,.0f} / {enc_bpp:,.0f} | - | - | - |"
        )
        if rules:
            print(
                f"| rule state bytes per (profile, rule) | {rule_bpp / len(rules):,.1f} | - | - | - |"
            )
        if not args.skip_lookup and shutil.which("wrk"):
            lookups(tmp, events, args)
    finally:
        if source is not log:
            source.close()
        shutil.rmtree(tmp, ignore_errors=True)


def lookups(tmp: Path, events: list[Event], args: argparse.Namespace) -> None:
    from segflow.catalog.tokens import TokenStore

    (tmp / "token").write_text(TokenStore(tmp / "catalog.sqlite").create("read"))
    (tmp / "baseline_token").write_text("baseline-secret")
    users = sorted({e.user_id for e in events if e.user_id})
    (tmp / "ids.txt").write_text("\n".join(users) + "\n")
    (tmp / "lookup.lua").write_text(LUA)
    env = {**os.environ, "IDS_FILE": str(tmp / "ids.txt")}
    res: dict[str, list[dict[str, float]]] = {"segflow": [], "baseline": []}
    for rnd in range(args.rounds + 1):
        for kind in ("segflow", "baseline"):
            r = lookup_round(kind, tmp, args.lookup_seconds if rnd else 1, args.rate, env)
            if rnd:
                res[kind].append(r)
                print(f"lookup round {rnd} {kind}: {r}", file=sys.stderr)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in res[kind])

    ratio = statistics.median(
        b["p99_ms"] / s["p99_ms"] for s, b in zip(res["segflow"], res["baseline"], strict=True)
    )
    print(
        f"| profile lookup p50 / p99 / max ms at {med('segflow', 'rps'):,.0f} req/s (baseline {med('baseline', 'rps'):,.0f}) "
        f"| {med('segflow', 'p50_ms'):.2f} / {med('segflow', 'p99_ms'):.2f} / {med('segflow', 'max_ms'):.1f} "
        f"| {med('baseline', 'p50_ms'):.2f} / {med('baseline', 'p99_ms'):.2f} / {med('baseline', 'max_ms'):.1f} "
        f"| {ratio:.2f}x (baseline p99 / segflow p99) | p99 <= 5 ms |"
    )


if __name__ == "__main__":
    main()
