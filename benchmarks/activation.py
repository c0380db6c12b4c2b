"""End-to-end activation: event accepted (HTTP 200) -> webhook received, and membership reads.

Run: ``python -m benchmarks.activation [--rounds 5] [--seconds 3] [--lookup-seconds 4]``
``[--serve supervised,single] [--before SRC] [--no-baseline] [--server-cpus 0]``

segflow runs as users run it: ``segflow serve``, the supervisor and its children (``--serve
single``: ``--single-process``; both: alternated in each round). ``--before SRC`` also runs the
segflow of another source tree (a worktree of the previous commit) in the same rounds, for a
before/after in one run.

- **Freshness**: a load generator offers ``track "Signed Up"`` events of new users (5 per
  ``/v1/batch`` request) at 1,000 and 5,000 events/s to a real ``segflow serve`` process; the
  segment ``did "Signed Up"`` makes each one an ``entered`` change for a webhook destination.
  Latency: from the moment the client read the request's HTTP 200 to the moment a local
  receiver got the webhook carrying that user (both clocks are this machine's wall clock).
  Destinations (concurrency 32): unbatched, and batched (up to 100 changes or 5 ms per
  request).
- **segflow's own freshness figures** after each round (``/api/v1/segments/{name}``): ack ->
  membership change committed, and the lateness of time-driven exits of a second segment
  ``did "Signed Up" in last 2 seconds`` (not subscribed; an extra rule the baseline does not
  have).
- **Membership reads**: ``GET /api/v1/profiles/user_id:{id}/segments`` on the same server
  (its state holds every user the freshness rounds created), ``wrk`` capped at 2,000 req/s.

Baseline (``benchmarks/baselines/webhook_pipeline.py``): FastAPI + pydantic + uvicorn, the
events appended to SQLite (``synchronous=FULL``) before the 200, one thread polling them and
POSTing signed webhooks (the same batching), memberships in a SQLite table for the reads.

Placement (2 cores): the server under test on core 0 (``--server-cpus``); the load
generator, the receiver and ``wrk`` on core 1. Every server runs all along; those not measured
are paused (SIGSTOP to each process of the tree: the supervisor's children have process groups
of their own), and rounds alternate the servers after a warm-up round.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from benchmarks.common import commit, machine, median, receiver_script
from benchmarks.loadgen import exchange

RECEIVER = receiver_script(
    """
def keys(change):
    for ident in change["data"]["identifiers"]:
        if ident["type"] == "user_id":
            yield ident["value"]
"""
)
PER_REQUEST = 5
SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``): a supervised ``segflow serve`` puts each
    child in a process group of its own, so one signal to the group would not reach them."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return found


class System:
    """One server under test: its processes (paused when not measured) and how to reach it."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int, auth: Any) -> None:
        self.name, self.proc, self.port, self.auth = name, proc, port, auth
        self.token = ""
        self.stopped: list[int] = []

    @property
    def is_segflow(self) -> bool:
        return self.name.startswith("segflow")

    def pause(self) -> None:
        self.stopped = process_tree(self.proc.pid)
        for pid in self.stopped:  # the supervisor first: it restarts no paused child
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in reversed(self.stopped or [self.proc.pid]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped = []

    def stop(self) -> None:
        self.resume()
        self.proc.terminate()
        self.proc.wait(60)


def start_segflow(
    tmp: Path,
    hook: str,
    batch: int,
    mode: str = "supervised",
    src: str | None = None,
    cpus: str = "0",
) -> System:
    """``segflow serve`` on core 0: ``supervised`` (the default layout: http-1, pipeline,
    activate; docs/serve.md) or ``single`` (``--single-process``: every part as threads);
    ``src``: run the segflow of that source tree instead (``--before``); ``cpus``: its cores."""
    from typer.testing import CliRunner

    from segflow.cli.main import _register_all, app

    _register_all()
    name = ("segflow" if mode == "supervised" else f"segflow-{mode}") + ("-before" if src else "")
    data = tmp / f"{name}-{batch}"
    env = {**os.environ, "SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]'}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "--data-dir", str(data)], env=env)
        assert result.exit_code == 0, result.output
        return str(result.output.strip().splitlines()[-1])

    write_key, token = cli("sources", "create", "web"), cli("tokens", "create", "--role", "admin")
    port = free_port()
    single = ["--single-process"] if mode == "single" else []
    proc = subprocess.Popen(
        ["taskset", "-c", cpus, sys.executable, "-m", "segflow.cli.main", "serve", *single,
         "--data-dir", str(data), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp / f"{name}.log").open("ab"),
    )  # fmt: skip
    wait_listening(port, proc)
    system = System(name, proc, port, (write_key, ""))
    system.token = token
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        for _ in range(600):
            if api.get("/api/v1/health").status_code == 200:
                break
            time.sleep(0.1)
        made = api.post("/api/v1/segments", json={"name": "signed", "rule": 'did "Signed Up"'})
        assert made.status_code == 201, made.text
        # not subscribed: its exits, caused by time alone, measure the timers' lateness
        made = api.post("/api/v1/segments", json={"name": "recent", "rule": RECENT})
        assert made.status_code == 201, made.text
        dest = {"name": "hook", "url": hook, "batch_max": batch, "batch_wait_ms": 5 if batch > 1 else 0,
                "concurrency": 32, "subscriptions": [{"segment": "signed"}]}  # fmt: skip
        made = api.post("/api/v1/destinations", json=dest)
        assert made.status_code == 201, made.text
    return system


def start_baseline(tmp: Path, hook: str, batch: int, cpus: str = "0") -> System:
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", cpus, sys.executable, "-m", "benchmarks.baselines.webhook_pipeline",
         str(tmp / f"baseline-{batch}.sqlite"), str(port), hook, str(batch), SECRET],
        stdout=subprocess.DEVNULL, stderr=(tmp / "baseline.log").open("ab"),
    )  # fmt: skip
    wait_listening(port, proc)
    return System("baseline", proc, port, ("-", ""))


async def offer_batches(
    system: System,
    rate: int,
    seconds: float,
    prefix: str,
    messages: Callable[[list[str]], list[dict[str, Any]]],
    acked: Callable[[int, list[str], float], None],
) -> float:
    """Send ``rate * seconds`` events on schedule over 64 keep-alive connections,
    ``PER_REQUEST`` per ``/v1/batch`` request: request ``i`` is ``messages(users)`` for the
    users ``{prefix}-{i}-{k}``; ``acked(i, users, wall time)`` when its 200 is read. Returns
    the seconds from the first request's schedule to the last answer."""
    auth = base64.b64encode(f"{system.auth[0]}:".encode()).decode()
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    requests = int(rate * seconds) // PER_REQUEST

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", system.port)
        try:
            while (i := await queue.get()) is not None:
                users = [f"{prefix}-{i}-{k}" for k in range(PER_REQUEST)]
                body = msgspec.json.encode({"batch": messages(users)})
                head = (f"POST /v1/batch HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
                if await exchange(reader, writer, head.encode() + body) == 200:
                    acked(i, users, time.time())
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(64)]
    start = time.perf_counter()
    for i in range(requests):
        delay = start + i * PER_REQUEST / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(i)
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def offer(system: System, rate: int, seconds: float, prefix: str) -> dict[str, float]:
    """``Signed Up`` events offered at ``rate`` (:func:`offer_batches`); the wall-clock time
    each one's 200 was read, by user id."""
    got: dict[str, float] = {}

    def messages(users: list[str]) -> list[dict[str, Any]]:
        return [{"type": "track", "userId": u, "event": "Signed Up", "messageId": u} for u in users]

    def acked(i: int, users: list[str], now: float) -> None:
        got.update((u, now) for u in users)

    await offer_batches(system, rate, seconds, prefix, messages, acked)
    return got


def collect(receiver: str, expected: set[str], deadline_s: float = 120) -> dict[str, float]:
    seen: dict[str, float] = {}
    end = time.monotonic() + deadline_s
    while not expected <= seen.keys() and time.monotonic() < end:
        time.sleep(0.05)
        seen.update({u: t for u, t in httpx.get(receiver, timeout=30).json()})
    return seen


def freshness(
    system: System, receiver: str, rate: int, seconds: float, tag: str
) -> dict[str, float]:
    system.resume()
    measured: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        acked = run(offer(system, rate, seconds, tag))
        offered = len(acked) / (time.perf_counter() - t0)
        seen = collect(receiver, set(acked))
        if system.is_segflow:
            measured = segment_freshness(system)
    finally:
        system.pause()
    lat = sorted((seen[u] - t) * 1000 for u, t in acked.items() if u in seen)
    missing = len(acked) - len(lat)
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "max": lat[-1],
            "achieved": offered, "missing": missing, **measured}  # fmt: skip


RECENT = 'did "Signed Up" in last 2 seconds'


def segment_freshness(system: System) -> dict[str, float]:
    """segflow's own measurement, per segment (the last 2,048 changes of each kind): ack ->
    membership change committed (``signed``, event-driven) and the lateness of the exits of
    ``recent`` (time-driven, due 2 s after each entry: waited for before the pause)."""
    time.sleep(2.5)
    end = time.monotonic() + 60  # a loaded machine: the timers, or the snapshot, come later
    with httpx.Client(base_url=f"http://127.0.0.1:{system.port}", timeout=60) as api:
        api.headers["Authorization"] = f"Bearer {system.token}"
        while True:
            signed = api.get("/api/v1/segments/signed").json()["freshness"]
            timers = (api.get("/api/v1/segments/recent").json()["freshness"] or {}).get("timers")
            if (signed and timers) or time.monotonic() > end:
                break
            time.sleep(0.5)
    return {"m50": signed["p50_ms"], "m99": signed["p99_ms"], "mmax": signed["max_ms"],
            "t50": timers["p50_ms"], "t99": timers["p99_ms"], "tmax": timers["max_ms"]}  # fmt: skip


def run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


LUA = """
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local token = os.getenv("TOKEN")
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
local delay_ms = tonumber(os.getenv("DELAY_MS"))
request = function()
  return wrk.format("GET", "/api/v1/profiles/user_id:" .. ids[math.random(#ids)] .. "/segments")
end
delay = function() return delay_ms end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\\n", latency:percentile(50),
    latency:percentile(99), latency.max, summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def reads(system: System, tmp: Path, users: list[str], seconds: int, rate: int) -> dict[str, float]:
    """wrk (1 thread, 20 connections, a per-request delay capping the rate) on core 1."""
    (tmp / "ids.txt").write_text("\n".join(users) + "\n")
    (tmp / "reads.lua").write_text(LUA)
    conns = 20
    env = {**os.environ, "IDS_FILE": str(tmp / "ids.txt"), "TOKEN": system.token,
           "DELAY_MS": str(max(1, 1000 * conns // rate - 2))}  # fmt: skip
    system.resume()
    try:
        out = subprocess.run(
            ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s",
             str(tmp / "reads.lua"), f"http://127.0.0.1:{system.port}"],
            capture_output=True, text=True, env=env, check=True,
        ).stdout  # fmt: skip
    finally:
        system.pause()
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    p50, p99, mx, n, dur_us, errors, bad = (int(x) for x in line.split()[1:])
    return {"p50": p50 / 1000, "p99": p99 / 1000, "max": mx / 1000, "rps": n / (dur_us / 1e6),
            "errors": errors + bad}  # fmt: skip


def measured_row(label: str, s: list[dict[str, float]], key: str, target: str) -> str:
    """A row of segflow's own measurement (no baseline has it): medians over rounds."""
    med: Callable[[str], float] = lambda k: median([r[key + k] for r in s])  # noqa: E731
    return (
        f"| {label} | {med('50'):.1f} / {med('99'):.1f} / {med('max'):.0f} ms | - | - | {target} |"
    )


def table(rows: list[str]) -> None:
    print("| measure | segflow | baseline | ratio (p99 baseline / segflow) | target |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


def row(
    label: str,
    s: list[dict[str, float]],
    b: list[dict[str, float]] | None,
    target: str,
    unit: str,
) -> str:
    def fig(results: list[dict[str, float]]) -> str:
        med: Callable[[str], float] = lambda k: median([r[k] for r in results])  # noqa: E731
        extra = f"rps {med('rps'):,.0f}" if "rps" in results[0] else f"{med('achieved'):,.0f}/s"
        return f"{med('p50'):.1f} / {med('p99'):.1f} / {med('max'):.0f} {unit} ({extra})"

    if b is None:
        return f"| {label} | {fig(s)} | - | - | {target} |"
    ratio = median([y["p99"] / x["p99"] for x, y in zip(s, b, strict=True)])
    return f"| {label} | {fig(s)} | {fig(b)} | {ratio:.2f}x | {target} |"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument(
        "--plan",
        default="1:1000,100:1000,100:5000",
        help="batch_max:events/s pairs (unbatched delivery tops out near 1,000 changes/s here)",
    )
    ap.add_argument(
        "--serve",
        default="supervised",
        help="segflow serve's layouts to measure, alternated in each round: supervised (the "
        "default `segflow serve`), single (--single-process), or both: supervised,single",
    )
    ap.add_argument("--no-baseline", action="store_true", help="measure segflow alone")
    ap.add_argument(
        "--before",
        metavar="SRC",
        help="also measure the segflow of the source tree SRC (e.g. a worktree of the commit "
        "before a change), in the same layouts, alternating with this one",
    )
    ap.add_argument("--lookup-seconds", type=int, default=4)
    ap.add_argument("--lookup-rate", type=int, default=2000)
    ap.add_argument(
        "--server-cpus",
        default="0",
        help="the servers' cores for taskset (default 0; 0,1: the supervised server spreads its "
        "children over both cores, as on a machine of its own, sharing core 1 with the load)",
    )
    args = ap.parse_args()
    modes = [m.strip() for m in args.serve.split(",") if m.strip()]
    if not modes or set(modes) - {"supervised", "single"}:
        ap.error("--serve: supervised, single or supervised,single")
    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="segflow-bench-activation-"))
    port = free_port()
    script = tmp / "receiver.py"
    script.write_text(RECEIVER)
    receiver = subprocess.Popen(["taskset", "-c", "1", sys.executable, str(script), str(port)])
    hook, seen_url = f"http://127.0.0.1:{port}/hook", f"http://127.0.0.1:{port}/seen"
    rows: list[str] = []
    load = os.getloadavg()
    try:
        wait_listening(port, receiver)
        plan = [tuple(int(x) for x in p.split(":")) for p in args.plan.split(",")]
        for batch in dict.fromkeys(b for b, _ in plan):
            rates = [r for b, r in plan if b == batch]
            cpus = args.server_cpus
            systems = [start_segflow(tmp, hook, batch, m, cpus=cpus) for m in modes]
            if args.before:
                systems += [start_segflow(tmp, hook, batch, m, args.before, cpus) for m in modes]
            if not args.no_baseline:
                systems.append(start_baseline(tmp, hook, batch, cpus))
            for s in systems:
                s.pause()
            try:
                rows += rounds(args, systems, seen_url, batch, rates, tmp)
            finally:
                for s in systems:
                    s.stop()
    finally:
        receiver.terminate()
        receiver.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    after = os.getloadavg()
    print(f"machine: {machine()}  commit: {commit()}  rounds: {args.rounds}  "
          f"{PER_REQUEST} events per request, {args.seconds:g} s per round  "
          f"load average {load[0]:.2f} -> {after[0]:.2f}")  # fmt: skip
    table(rows)


def rounds(
    args: argparse.Namespace,
    systems: list[System],
    seen: str,
    batch: int,
    rates: list[int],
    tmp: Path,
) -> list[str]:
    out: list[str] = []
    users: dict[str, list[str]] = {s.name: [] for s in systems}
    baseline = next((s for s in systems if not s.is_segflow), None)
    for rate in rates:
        res: dict[str, list[dict[str, float]]] = {s.name: [] for s in systems}
        for rnd in range(args.rounds + 1):  # round 0: warm-up
            for s in systems:
                tag = f"{s.name}-r{rate}b{batch}n{rnd}"
                r = freshness(s, seen, rate, args.seconds if rnd else 1.0, tag)
                print(f"{s.name} batch {batch} @ {rate}/s round {rnd}: {r}", file=sys.stderr)
                if rnd:
                    res[s.name].append(r)
        for s in systems:
            n = int(rate * args.seconds) // PER_REQUEST
            users[s.name] += [f"{s.name}-r{rate}b{batch}n1-{i}-0" for i in range(n)]
        for s in systems:
            if not s.is_segflow:
                continue
            at = f"@ {rate:,} events/s, batch_max {batch}, {s.name}"
            label = f"freshness {at}: p50 / p99 / max (achieved)"
            other = res[baseline.name] if baseline is not None else None
            out.append(row(label, res[s.name], other, "p99 <= 50 ms", "ms"))
            out.append(measured_row(f"ack -> membership change {at} (segflow's per-segment "
                                    "figure)", res[s.name], "m", "p99 <= 50 ms at 5,000 events/s"))  # fmt: skip
            out.append(measured_row(f"timer lateness (exits of `{RECENT}`) {at}", res[s.name],
                                    "t", "<= 1 s"))  # fmt: skip
    if batch == 1 and baseline is not None and shutil.which("wrk"):
        res = {s.name: [] for s in systems}
        for rnd in range(args.rounds + 1):
            for s in systems:
                r = reads(
                    s, tmp, users[s.name], args.lookup_seconds if rnd else 1, args.lookup_rate
                )
                print(f"{s.name} reads round {rnd}: {r}", file=sys.stderr)
                if rnd:
                    res[s.name].append(r)
        label = f"membership reads (/segments) at <= {args.lookup_rate:,} req/s: p50 / p99 / max"
        for s in systems:
            if s.is_segflow:
                out.append(row(f"{label}, {s.name}", res[s.name], res[baseline.name],
                               "p99 <= 5 ms", "ms"))  # fmt: skip
    return out


if __name__ == "__main__":
    main()
