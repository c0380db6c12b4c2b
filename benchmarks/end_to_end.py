"""End to end: ``/v1/batch`` into ``segflow serve`` with 10 segments, until the processor's lag
is 0, vs a FastAPI + pydantic v2 + SQLite server that only stores the same batches.

Run: ``python -m benchmarks.end_to_end [--rounds 3] [--seconds 20] [--pin cores|none]``

segflow side, each round on a fresh data directory (a copy of one made once through segflow's
own CLI: ``sources create``, ``tokens create --role admin`` and ``segments create`` for the 10
rules of :data:`benchmarks.rules.TEN_RULES`): ``segflow serve`` starts, the load generator
(:mod:`benchmarks.loadgen`, closed loop, ``--connections`` keep-alive connections) sends
``/v1/batch`` requests of 100 events stamped now for ``--seconds``, then the driver waits until
the processor's lag (``parts.processor.lag`` of ``GET /api/v1/status``: the log's end offsets
minus the processor's mirrored offsets) is 0. Reported per round:

- **end to end events/s** = events acknowledged (HTTP 200) / (load time + drain time);
- **ingest events/s** = events acknowledged / load time (what the collector took meanwhile);
- **max processor lag** seen during the load (status polled every 0.5 s from a thread of the
  driver, on the load generator's core), and the lag when the load stopped;
- **drain time**: from the end of the load to the first status poll (every 0.2 s) that reads
  lag 0 with every acknowledged event in the log (the processor mirrors its offsets at most
  once a second while busy and at once when idle, so this overstates by at most a poll);
- the processor's own rate while loaded and while draining, and CPU use of the server and of
  the load generator (``/proc``), to show where time goes.

Baseline (``benchmarks/baselines/fastapi_ingest.py``): FastAPI + pydantic v2 + uvicorn,
validating the same batches and storing them in SQLite (WAL, ``synchronous=FULL``, one
transaction per request) before the 200; a fresh database per round. It only stores, so its
end-to-end rate is its ingest rate.

Load: a seeded pool of ~500-byte Segment events over ``--users`` users (every user at least
once), windows of 100 taken in turn, messageIds made unique per request and ``timestamp`` /
``sentAt`` set to the time the body is built: page views, product views and adds with
categories, checkouts, orders with revenue (known users), identifies with traits (plan, email)
for known users; a quarter of the users stay anonymous. Known users' events carry both
``userId`` and ``anonymousId``, as analytics.js sends them after ``identify``.

Placement (``--pin cores``, default): the server pinned to core 0 (``taskset -c 0``), the
driver and load generator to core 1. ``--pin none``: nothing pinned (for a server that may use
several processes). Rounds alternate segflow / baseline after a warm-up round of each
(``--warmup-seconds``); medians over rounds and the median of per-round ratios are reported.

Every server runs in its own session with its own temp directory and port; all are killed when
the benchmark ends (also on Ctrl-C / SIGTERM, and by the kernel if the driver dies).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import commit, machine, median
from benchmarks.loadgen import run_load
from benchmarks.rules import TEN_RULES

PER_REQUEST = 100
MID = b"@@@@@@@@@@"  # per-request part of each messageId (10 digits)
TS = b"@@@@@@@@@@@@@@@@@@@@@@@@"  # "2024-05-01T12:00:00.000Z": 24 characters
CATEGORIES = ["shoes", "shoes", "hats", "bags", "shirts", "socks", "watches"]  # shoes: 2/7
PAGES = ["Home", "Category", "Search", "Cart", "Help"]
TARGET = ">= 2x the baseline"

# -- load ---------------------------------------------------------------------------------------


def _event(rng: random.Random, user: int, pos: int) -> dict[str, Any]:
    """One event of ``user`` at pool position ``pos`` (its messageId's fixed suffix)."""
    known = user % 4 != 0
    ts = TS.decode()
    base: dict[str, Any] = {
        "messageId": f"{MID.decode()}-{pos:07d}",
        "anonymousId": f"anon-{user:08x}-{(user * 2654435761) % (1 << 32):08x}",
        "context": {
            "ip": "203.0.113.7",
            "locale": "en-US",
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "page": {"path": "/products", "url": "https://shop.example/products"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
        },
        "timestamp": ts,
        "sentAt": ts,
    }
    if known:
        base["userId"] = f"user-{user}"
    cat = rng.choice(CATEGORIES)
    product = {"product_id": f"sku-{rng.randrange(5000)}", "category": cat,
               "price": round(rng.uniform(5, 300), 2), "currency": "USD"}  # fmt: skip
    r = rng.random()
    if r >= 0.92 and known:
        plan = rng.choice(["free", "free", "pro", "team"])
        traits = {"plan": plan, "email": f"user-{user}@example.com", "name": f"User {user}",
                  "created_at": "2024-01-15T09:30:00Z"}  # fmt: skip
        return {"type": "identify", "traits": traits, **base}
    if r >= 0.84 and known:
        revenue = round(rng.uniform(10, 400), 2)
        props = {"order_id": f"o-{pos}", "revenue": revenue, "currency": "USD",
                 "products": [{"product_id": product["product_id"], "category": cat}]}  # fmt: skip
        return {"type": "track", "event": "Order Completed", "properties": props, **base}
    if r < 0.22 or r >= 0.84:
        name = rng.choice(PAGES)
        props = {"path": f"/{name.lower()}", "title": name, "referrer": "https://search.example/"}
        return {"type": "page", "name": name, "properties": props, **base}
    if r < 0.60:
        return {"type": "track", "event": "Product Viewed", "properties": product, **base}
    if r < 0.76:
        added = {**product, "quantity": rng.randrange(1, 4)}
        return {"type": "track", "event": "Product Added", "properties": added, **base}
    checkout = {"value": round(rng.uniform(20, 500), 2), "currency": "USD"}
    return {"type": "track", "event": "Checkout Started", "properties": checkout, **base}


def event_pool(users: int, seed: int = 11) -> list[bytes]:
    """``2 * users + 3`` encoded events: each user once (shuffled), then users at random; the
    pool's length is no multiple of 100, so each pass pairs other events in a request.

    >>> pool = event_pool(50)
    >>> len(pool), all(MID in e and TS in e for e in pool)
    (103, True)
    >>> len({json.loads(e)["anonymousId"] for e in pool})
    50
    """
    rng = random.Random(seed)
    order = list(range(users))
    rng.shuffle(order)
    order += [rng.randrange(users) for _ in range(users + 3)]
    return [json.dumps(_event(rng, u, pos), separators=(",", ":")).encode() for pos, u in enumerate(order)]  # fmt: skip


class Bodies:
    """Request ``n``'s body: the pool's ``n``-th window of 100 events, with messageIds unique
    to ``n`` and the time of building as ``timestamp`` and ``sentAt``.

    >>> body = json.loads(Bodies(event_pool(50))(7))["batch"]
    >>> len(body), body[0]["messageId"].startswith("0000000007-"), body[0]["timestamp"][-1]
    (100, True, 'Z')
    """

    def __init__(self, pool: list[bytes]) -> None:
        if len(pool) < PER_REQUEST:
            raise ValueError(f"a pool of {len(pool)} events: at least {PER_REQUEST} needed")
        self.pool = pool
        self.doubled = pool + pool[:PER_REQUEST]

    def __call__(self, n: int) -> bytes:
        start = (n * PER_REQUEST) % len(self.pool)
        body = b'{"batch":[' + b",".join(self.doubled[start : start + PER_REQUEST]) + b"]}"
        now = datetime.now(UTC)
        stamp = b"%s.%03dZ" % (now.strftime("%Y-%m-%dT%H:%M:%S").encode(), now.microsecond // 1000)
        return body.replace(TS, stamp).replace(MID, b"%010d" % n)  # TS first: it holds MID


# -- processes ------------------------------------------------------------------------------------

LIVE: dict[int, subprocess.Popen[bytes]] = {}  # pid -> server, killed at exit whatever happens


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGKILL if the driver dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kill_all() -> None:
    for proc in list(LIVE.values()):
        stop(proc)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class ServerFailed(RuntimeError):
    pass


def launch(cmd: list[str], log: Path, pin: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    if pin == "cores":
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env=env,
        start_new_session=True,  # Ctrl-C reaches the driver only; the group is killed as one
        preexec_fn=_die_with_parent,
    )
    LIVE[proc.pid] = proc
    return proc


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"server exited with {proc.returncode}; its stderr:\n{tail(log)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ServerFailed(f"server not ready on {path} after 120 s; its stderr:\n{tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after 30 s."""
    LIVE.pop(proc.pid, None)
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the server left in its group


def cpu_seconds(session: int) -> float:
    """User + system CPU seconds of the live processes of a session (threads included)."""
    return sum(cpu_by_role(session).values())


def cpu_by_role(session: int) -> dict[str, float]:
    """:func:`cpu_seconds` per process of the session, keyed by its ``--role`` (a supervised
    child: ``http-1``, ``pipeline``, ...; its command line's value) or ``server`` (the
    supervisor, or the one process of ``--single-process``)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[3]) != session:  # field 6 (session), counted after the name
            continue
        role = "server"
        if b"--role" in argv and argv.index(b"--role") + 1 < len(argv):
            role = argv[argv.index(b"--role") + 1].decode()
        for task in os.scandir(Path(entry.path, "task")):  # native threads apart (RocksDB's)
            try:
                raw = Path(task.path, "stat").read_text()
            except OSError:
                continue
            name = raw[raw.find("(") + 1 : raw.rfind(")")]
            what = role if name.startswith("python") else f"{role}/{name.split(':')[0]}"
            spent = sum(map(int, raw[raw.rfind(")") + 2 :].split()[11:13])) / tick
            found[what] = found.get(what, 0.0) + spent
    return found


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- segflow ------------------------------------------------------------------------------------


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "segflow.cli.main", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ServerFailed(f"segflow {' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def make_template(root: Path) -> tuple[Path, str, str]:
    """A data directory with a source, an admin token and the 10 segments, made by the CLI."""
    data = root / "template"
    key = cli("sources", "create", "bench", "--data-dir", str(data))
    token = cli("tokens", "create", "--role", "admin", "--name", "bench", "--data-dir", str(data))
    for name, rule in TEN_RULES.items():
        cli("segments", "create", name, rule, "--data-dir", str(data))
    return data, key, token


@dataclass
class Round:
    system: str
    acked_events: int = 0
    failed_requests: int = 0
    load_s: float = 0.0
    drain_s: float = 0.0
    ingest_eps: float = 0.0
    e2e_eps: float = 0.0
    max_lag: int = 0
    lag_at_end: int = 0
    processed_loaded_eps: float = 0.0  # processor events/s while the load ran
    processed_draining_eps: float = 0.0
    server_cpu: float = 0.0  # CPU seconds / wall seconds over load + drain
    # CPU µs an acknowledged event per process role over load + drain (where the time goes)
    role_cpu_us: dict[str, float] = field(default_factory=dict)
    loadgen_cpu: float = 0.0  # the driver's CPU seconds / wall seconds during the load
    lag_samples: list[tuple[float, int]] = field(default_factory=list)
    segment_sizes: dict[str, int] = field(default_factory=dict)  # members after the drain


class LagPoller(threading.Thread):
    """Polls ``/api/v1/status`` every ``interval`` s; keeps (seconds since start, lag)."""

    def __init__(self, port: int, token: str, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.errors = 0
        self.done = threading.Event()
        self.start_time = time.perf_counter()

    def status(self) -> dict[str, Any]:
        got = self.client.get("/api/v1/status")
        got.raise_for_status()
        out: dict[str, Any] = got.json()
        return out

    def run(self) -> None:
        due = time.perf_counter()
        while True:  # on a fixed schedule: a slow answer (the server is saturated) is not added
            due = max(due + self.interval, time.perf_counter())
            if self.done.wait(max(0.0, due - time.perf_counter())):
                return
            try:
                lag = int(self.status()["parts"]["processor"]["lag"])
            except (httpx.HTTPError, KeyError, ValueError):
                self.errors += 1
                continue
            self.samples.append((round(time.perf_counter() - self.start_time, 2), lag))

    def stop(self) -> None:
        self.done.set()
        self.join(60)


def segflow_round(
    template: Path, key: str, token: str, root: Path, n: int, args: argparse.Namespace,
    bodies: Bodies, counter: itertools.count[int], seconds: float,
) -> Round:  # fmt: skip
    data = root / f"segflow-{n}"
    shutil.copytree(template, data)
    log = root / f"segflow-{n}.log"
    port = free_port()
    # pinned to one core: one process (the budget's); unpinned: the supervisor's processes
    one = ["--single-process"] if args.pin == "cores" else []
    proc = launch(
        [sys.executable, "-m", "segflow.cli.main", "serve", *one, "--data-dir", str(data),
         "--port", str(port)],
        log, args.pin,
    )  # fmt: skip
    out = Round("segflow")
    try:
        wait_ready(proc, port, "/readyz", log)
        probe = Bodies(bodies.pool)(next(counter))  # every event of a batch accepted?
        got = httpx.post(f"http://127.0.0.1:{port}/v1/batch", content=probe, auth=(key, ""),
                         headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip
        if got.status_code != 200 or got.json().get("accepted") != PER_REQUEST:
            raise ServerFailed(f"probe batch: {got.status_code} {got.text[:500]}")
        poller = LagPoller(port, token)
        wait_lag_zero(poller, PER_REQUEST, timeout=60)
        roles0, own0 = cpu_by_role(proc.pid), own_cpu()
        cpu0 = sum(roles0.values())
        poller.start_time = time.perf_counter()
        poller.start()
        try:
            load = run_load(port, "/v1/batch", key, bodies, counter, seconds=seconds,
                            connections=args.connections)  # fmt: skip
        finally:
            poller.stop()
        loaded_at = time.perf_counter()
        out.loadgen_cpu = (own_cpu() - own0) / load.seconds
        out.acked_events = load.ok * PER_REQUEST
        out.failed_requests = load.failed
        out.load_s = load.seconds
        out.lag_samples = poller.samples
        out.max_lag = max((lag for _, lag in poller.samples), default=0)
        lag_end = wait_lag_zero(poller, out.acked_events + PER_REQUEST, args.drain_timeout)
        out.drain_s = time.perf_counter() - loaded_at
        roles = cpu_by_role(proc.pid)
        out.server_cpu = (sum(roles.values()) - cpu0) / (out.load_s + out.drain_s)
        out.role_cpu_us = {
            role: (spent - roles0.get(role, 0.0)) / max(out.acked_events, 1) * 1e6
            for role, spent in sorted(roles.items())
        }
        out.lag_at_end = lag_end
        out.max_lag = max(out.max_lag, lag_end)
        out.ingest_eps = out.acked_events / out.load_s
        out.e2e_eps = out.acked_events / (out.load_s + out.drain_s)
        out.processed_loaded_eps = (out.acked_events - lag_end) / out.load_s
        out.processed_draining_eps = lag_end / out.drain_s if out.drain_s else 0.0
        listing = poller.client.get("/api/v1/segments", timeout=120).json()
        out.segment_sizes = {d["name"]: d["size"] for d in listing}
        if poller.errors:
            print(f"  ({poller.errors} status polls failed)", file=sys.stderr)
        poller.client.close()
    except (httpx.HTTPError, OSError, EOFError) as exc:  # EOFError: a reply cut short
        raise ServerFailed(f"{exc!r}; server stderr:\n{tail(log)}") from exc
    finally:
        stop(proc)
    return out


def wait_lag_zero(poller: LagPoller, events: int, timeout: float) -> int:
    """Poll every 0.2 s until the processor's lag is 0 with at least ``events`` in the log;
    the first lag read (the lag when the load stopped)."""
    first: int | None = None
    deadline = time.monotonic() + timeout
    while True:
        doc = poller.status()
        lag = int(doc["parts"]["processor"]["lag"])
        first = lag if first is None else first
        if lag == 0 and int(doc["events"]) >= events:
            return first
        if time.monotonic() > deadline:
            raise ServerFailed(
                f"processor lag still {lag} after {timeout:.0f} s (log holds {doc['events']} "
                f"events, {events} expected)"
            )
        time.sleep(0.2)


# -- baseline ---------------------------------------------------------------------------------------


def baseline_round(
    root: Path, n: int, args: argparse.Namespace, bodies: Bodies, counter: itertools.count[int],
    seconds: float,
) -> Round:  # fmt: skip
    log = root / f"baseline-{n}.log"
    port = free_port()
    proc = launch(
        [sys.executable, "-m", "benchmarks.baselines.fastapi_ingest",
         str(root / f"baseline-{n}.sqlite"), str(port)],
        log, args.pin,
    )  # fmt: skip
    out = Round("baseline")
    try:
        wait_ready(proc, port, "/docs", log)
        cpu0, own0 = cpu_seconds(proc.pid), own_cpu()
        load = run_load(port, "/v1/batch", "bench", bodies, counter, seconds=seconds,
                        connections=args.connections)  # fmt: skip
        out.loadgen_cpu = (own_cpu() - own0) / load.seconds
        out.server_cpu = (cpu_seconds(proc.pid) - cpu0) / load.seconds
        out.acked_events = load.ok * PER_REQUEST
        out.failed_requests = load.failed
        out.load_s = load.seconds
        out.ingest_eps = out.e2e_eps = out.acked_events / load.seconds
        stored = _count(root / f"baseline-{n}.sqlite")
        if stored != out.acked_events:
            print(f"  baseline stored {stored} of {out.acked_events} events", file=sys.stderr)
    except (httpx.HTTPError, OSError, EOFError) as exc:  # EOFError: a reply cut short
        raise ServerFailed(f"{exc!r}; server stderr:\n{tail(log)}") from exc
    finally:
        stop(proc)
    return out


def _count(db: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as con:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="load time per round")
    ap.add_argument("--warmup-seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--pin", choices=["cores", "none"], default="cores",
                    help="cores: server on core 0, load on core 1; none: nothing pinned")  # fmt: skip
    ap.add_argument("--drain-timeout", type=float, default=600.0)
    ap.add_argument("--json", type=Path, help="also write every round's figures here")
    args = ap.parse_args()
    if args.pin == "cores":
        if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
            ap.error("--pin cores needs taskset and 2 cores (or use --pin none)")
        os.sched_setaffinity(0, {1})
    signal.signal(signal.SIGTERM, _sigterm)
    atexit.register(kill_all)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-e2e-"))
    rounds: list[tuple[Round, Round]] = []
    try:
        t0 = time.monotonic()
        bodies = Bodies(event_pool(args.users))
        template, key, token = make_template(root)
        print(f"setup {time.monotonic() - t0:.1f} s (pool of {len(bodies.pool):,} events, "
              f"{len(TEN_RULES)} segments)", file=sys.stderr)  # fmt: skip
        counter = itertools.count()
        for n in range(args.rounds + 1):  # round 0: warm-up
            seconds = args.seconds if n else args.warmup_seconds
            s = segflow_round(template, key, token, root, n, args, bodies, counter, seconds)
            b = baseline_round(root, n, args, bodies, counter, seconds)
            print(f"round {n}{' (warm-up)' if not n else ''}: " + describe(s, b), file=sys.stderr)
            print(f"  segment sizes: {s.segment_sizes}", file=sys.stderr)
            if n:
                rounds.append((s, b))
    except ServerFailed as exc:
        kill_all()
        sys.exit(f"end_to_end: {exc}")
    except KeyboardInterrupt:
        kill_all()
        print("end_to_end: interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        kill_all()
        shutil.rmtree(root, ignore_errors=True)
    report(args, rounds, load_before, os.getloadavg())


def describe(s: Round, b: Round) -> str:
    return (
        f"segflow e2e {s.e2e_eps:,.0f}/s (ingest {s.ingest_eps:,.0f}/s, {s.acked_events:,} events, "
        f"load {s.load_s:.1f} s + drain {s.drain_s:.1f} s, max lag {s.max_lag:,}, processor "
        f"{s.processed_loaded_eps:,.0f}/s loaded, {s.processed_draining_eps:,.0f}/s draining, "
        f"server CPU {s.server_cpu:.0%}, loadgen CPU {s.loadgen_cpu:.0%}, failed {s.failed_requests}; "
        f"CPU µs an event by role {', '.join(f'{k} {v:.1f}' for k, v in s.role_cpu_us.items() if v >= 0.05)}); "
        f"baseline {b.e2e_eps:,.0f}/s (server CPU {b.server_cpu:.0%}, loadgen CPU "
        f"{b.loadgen_cpu:.0%}, failed {b.failed_requests}); ratio {s.e2e_eps / b.e2e_eps:.3f}x"
    )


def report(
    args: argparse.Namespace,
    rounds: list[tuple[Round, Round]],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    s = [r[0] for r in rounds]
    b = [r[1] for r in rounds]
    ratios = [x.e2e_eps / y.e2e_eps for x, y in rounds]
    med = lambda rs, k: median([getattr(r, k) for r in rs])  # noqa: E731
    placement = ("server on core 0, load generator on core 1" if args.pin == "cores"
                 else "nothing pinned")  # fmt: skip
    print(
        f"machine: {machine()}; {placement}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {args.rounds} rounds x {args.seconds:g} s of /v1/batch "
        f"({PER_REQUEST} events a request, {args.users:,} users, {args.connections} connections), "
        f"{len(TEN_RULES)} segments; per-round e2e events/s segflow {[round(x.e2e_eps) for x in s]}, "
        f"baseline {[round(x.e2e_eps) for x in b]}"
    )
    print(
        "| date | commit | pin | segflow e2e events/s | baseline events/s (stores only) | ratio | "
        "segflow ingest events/s during load | max processor lag | drain s | processor events/s "
        "loaded / draining | target |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {datetime.now(UTC):%Y-%m-%d} | {commit()} | {args.pin} | {med(s, 'e2e_eps'):,.0f} | "
        f"{med(b, 'e2e_eps'):,.0f} | {statistics.median(ratios):.2f}x | "
        f"{med(s, 'ingest_eps'):,.0f} | {med(s, 'max_lag'):,.0f} | {med(s, 'drain_s'):.1f} | "
        f"{med(s, 'processed_loaded_eps'):,.0f} / {med(s, 'processed_draining_eps'):,.0f} | "
        f"{TARGET} |"
    )
    roles = sorted({role for r in s for role in r.role_cpu_us})
    print(
        "segflow CPU µs an acknowledged event by process (median of rounds, load + drain): "
        + ", ".join(
            f"{role} {median([r.role_cpu_us.get(role, 0.0) for r in s]):.1f}"
            for role in roles
            if median([r.role_cpu_us.get(role, 0.0) for r in s]) >= 0.05
        )
        + f"; all {median([sum(r.role_cpu_us.values()) for r in s]):.1f}"
    )
    if args.json:
        args.json.write_text(json.dumps([[asdict(x), asdict(y)] for x, y in rounds], indent=1))


if __name__ == "__main__":
    main()
