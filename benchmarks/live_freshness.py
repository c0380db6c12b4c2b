"""Freshness of a live score: event accepted (HTTP 200) -> score visible in the profile API.

Run: ``python -m benchmarks.live_freshness [--rates 1000,5000] [--rounds 3] [--seconds 5]``

A real ``segflow serve`` (``--single-process``, on core 0) gets a seeded history of the demo's
simulated shop (``segflow.demo.simulator``, ``--people`` people over ``--days`` days) through
``/v1/batch``; once the warehouse has it, one live logistic propensity model
(``performs "Order Completed" within 7 days`` on ``segflow.ml.live.DEFAULT_LIVE_FEATURES``)
is defined and trained through ``/api/v1/models/{name}/runs``, which hands its export to the
processor. Then, per round, a load generator on core 1 offers ``track "Product Viewed"`` events
of new visitors (5 per request, 64 keep-alive connections) at a fixed rate. ``--follow`` visitors
a second (the first of every n-th request, whatever the rate, so that the reads do not grow with
it) are followed: from the moment the client read the 200, her
``GET /api/v1/profiles/user_id:{id}/scores`` is polled every ``--poll-ms`` (every 4x that after
200 ms) until the model's score is there (a first-seen profile is scored in the processor batch of her first event, so
this is ack -> log -> processor batch -> committed state -> readable). The figures are the
client's wall clock; the poll interval bounds their resolution.

The reference, in the same run: a second ``segflow serve`` with the same history and no model,
whose visitors are followed until their profile is readable at all (the scores route answers
200): the processor's batch without live scoring. Both servers run all along; the one not
measured is paused (SIGSTOP), and the sides alternate round by round after a warm-up round.
The membership of the same events is committed in the same transaction as the score, so the
score's freshness is the processor's (``benchmarks.activation`` measures membership freshness
against a baseline pipeline). What limits it is printed beside it: the rate the server
achieved and the processor's lag when the last request was acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.activation import System, free_port, offer_batches, wait_listening
from benchmarks.common import commit, machine, median
from segflow.clock import MINUTE_MS
from segflow.demo.simulator import Simulator
from segflow.ml.live import DEFAULT_LIVE_FEATURES

MODEL = "fresh"
PER_REQUEST = 5
TARGET = 'performs "Order Completed" within 7 days'


def start(tmp: Path) -> System:
    """``segflow serve`` on core 0 with a source and an admin token (its model schedule off)."""
    from typer.testing import CliRunner

    from segflow.cli.main import _register_all, app

    _register_all()
    data = tmp / "segflow"
    env = {**os.environ, "SEGFLOW_ML__SCHEDULE_ENABLED": "false", "SEGFLOW_SHARED__DSN": ""}

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "--data-dir", str(data)], env=env)
        assert result.exit_code == 0, result.output
        return str(result.output.strip().splitlines()[-1])

    write_key, token = cli("sources", "create", "web"), cli("tokens", "create", "--role", "admin")
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "segflow.cli.main", "serve",
         "--single-process", "--data-dir", str(data), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "serve.log").open("ab"),
    )  # fmt: skip
    wait_listening(port, proc)
    system = System("segflow", proc, port, (write_key, ""))
    system.token = token
    return system


def api(system: System) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{system.port}",
        headers={"Authorization": f"Bearer {system.token}"},
        timeout=600,
    )


def caught_up(client: httpx.Client, timeout_s: float = 600) -> None:
    """Until the processor (not backfilling) and the loader have no lag, twice in a row."""
    deadline, seen = time.monotonic() + timeout_s, False
    while time.monotonic() < deadline:
        parts = client.get("/api/v1/status").json()["parts"]
        idle = parts["processor"].get("backfilling") is False and parts["processor"]["lag"] == 0
        if idle and parts["warehouse_loader"]["lag"] == 0:
            if seen:
                return
            seen = True
        else:
            seen = False
        time.sleep(1.5)  # the loader flushes every second; the processor's watcher too
    raise RuntimeError("segflow did not catch up")


def prepare(
    system: System, people: int, days: int, seed: int, *, model: bool = True
) -> dict[str, Any]:
    """The seeded history in, the live model trained and handed to the processor: its report
    (an empty one ``without`` a model)."""
    now = int(time.time() * 1000)
    history = Simulator(people=people, seed=seed).history(end_ms=now - 60 * MINUTE_MS, days=days)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{system.port}", auth=(system.auth[0], ""), timeout=60
    ) as collector:
        for i in range(0, len(history), 1000):
            r = collector.post("/v1/batch", json={"batch": history[i : i + 1000]})
            assert r.status_code == 200, r.text
    with api(system) as client:
        caught_up(client)
        if not model:
            return {"events": len(history), "metrics": {}}
        spec = {"kind": "propensity", "learner": "logistic", "target": TARGET,
                "feature_traits": dict(DEFAULT_LIVE_FEATURES)}  # fmt: skip
        made = client.put(f"/api/v1/models/{MODEL}", json=spec)
        assert made.status_code in (200, 201), made.text
        ran = client.post(f"/api/v1/models/{MODEL}/runs", json={})
        assert ran.status_code == 200, ran.text
        metrics = ran.json()["run"]["metrics"]
        if not metrics.get("used_for_scoring"):
            raise RuntimeError(f"the live model is not used: {metrics.get('warning')}")
        caught_up(client)  # its features are computed traits: the rule set changed
    return {"events": len(history), "metrics": metrics}


async def offer(
    system: System,
    rate: int,
    seconds: float,
    prefix: str,
    follow: int,
    poll_s: float,
    model: str | None = MODEL,
) -> tuple[list[float], int, float, int]:
    """Offer ``rate`` events/s for ``seconds``; ack -> score visible (ms) of ``follow`` visitors
    a second, how many never showed within 30 s, the rate achieved, and the processor's lag
    when the last request was acknowledged."""
    sample = max(1, rate // PER_REQUEST // follow)
    latencies: list[float] = []
    missing = 0
    followers: list[asyncio.Task[None]] = []
    polls = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{system.port}",
        headers={"Authorization": f"Bearer {system.token}"},
        limits=httpx.Limits(max_connections=32),
        timeout=30,
    )
    acked = 0

    def messages(users: list[str]) -> list[dict[str, Any]]:
        return [{"type": "track", "userId": u, "event": "Product Viewed", "messageId": u,
                 "properties": {"category": "shoes", "name": "Trail Runner GTX"}} for u in users]  # fmt: skip

    async def watch(user: str, acked_at: float) -> None:
        nonlocal missing
        while (waited := time.time() - acked_at) < 30:
            r = await polls.get(f"/api/v1/profiles/user_id:{user}/scores")
            if r.status_code == 200 and (model is None or model in r.json()["scores"]):
                latencies.append((time.time() - acked_at) * 1000)
                return
            await asyncio.sleep(poll_s if waited < 0.2 else 4 * poll_s)
        missing += 1

    def on_ack(i: int, users: list[str], now: float) -> None:
        nonlocal acked
        acked += len(users)
        if i % sample == 0:
            followers.append(asyncio.create_task(watch(users[0], now)))

    elapsed = await offer_batches(system, rate, seconds, prefix, messages, on_ack)
    achieved = acked / elapsed
    status = await polls.get("/api/v1/status")
    lag = int(status.json()["parts"]["processor"]["lag"] or 0)
    await asyncio.gather(*followers)
    await polls.aclose()
    return latencies, missing, achieved, lag


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rates", default="1000,5000", help="offered events/s, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--people", type=int, default=300)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--follow", type=int, default=20, help="visitors followed a second")
    ap.add_argument("--poll-ms", type=float, default=5.0)
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="segflow-bench-livefresh-"))
    sides: dict[str, tuple[System, str | None]] = {}
    try:
        for side, model in (("live", MODEL), ("reference", None)):
            (tmp / side).mkdir()
            system = start(tmp / side)
            sides[side] = (system, model)
            prepared = prepare(system, args.people, args.days, args.seed, model=model is not None)
            m = prepared["metrics"]
            print(f"{side}: history {prepared['events']:,} events", file=sys.stderr)
            if m:
                print(f"model trained and live: held-out ROC AUC {m['validation']['roc_auc']:.3f}, "
                      f"baseline {m['baseline']['roc_auc']:.3f}", file=sys.stderr)  # fmt: skip
            system.pause()
        Row = tuple[list[float], int, float, int]
        results: dict[tuple[str, int], list[Row]] = {}
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            for rate in rates:
                for side in list(sides) if rnd % 2 else list(sides)[::-1]:
                    system, model = sides[side]
                    system.resume()
                    row = asyncio.run(
                        offer(system, rate, args.seconds, f"r{rnd}-{rate}", args.follow,
                              args.poll_ms / 1000, model)
                    )  # fmt: skip
                    with api(system) as client:
                        caught_up(client, 120)
                    system.pause()
                    lat, missing, achieved, lag = row
                    print(f"round {rnd} @ {rate}/s {side}: achieved {achieved:,.0f}/s, p50 "
                          f"{quantile(lat, 0.5):.1f} p99 {quantile(lat, 0.99):.1f} ms "
                          f"({len(lat)} followed, {missing} missing), lag at the last ack {lag}",
                          file=sys.stderr)  # fmt: skip
                    if rnd:
                        results.setdefault((side, rate), []).append(row)
        report(args, rates, results)
    finally:
        for system, _ in sides.values():
            system.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(
    args: argparse.Namespace,
    rates: list[int],
    results: dict[tuple[str, int], list[tuple[list[float], int, float, int]]],
) -> None:
    """The markdown table: each side's median figures, and the median of per-round ratios."""

    def fig(rows: list[tuple[list[float], int, float, int]]) -> str:
        p50 = median([quantile(r[0], 0.5) for r in rows])
        p99 = median([quantile(r[0], 0.99) for r in rows])
        top = median([max(r[0], default=float("nan")) for r in rows])
        return (f"{p50:.1f} / {p99:.1f} / {top:.0f} ({median([r[2] for r in rows]):,.0f}/s, "
                f"lag {median([r[3] for r in rows]):,.0f}, {sum(r[1] for r in rows)} missing)")  # fmt: skip

    print(f"\n{time.strftime('%Y-%m-%d')}, commit {commit()}, {machine()}")
    print(f"`python -m benchmarks.live_freshness --rates {args.rates} --rounds {args.rounds} "
          f"--seconds {args.seconds:g}` (poll every {args.poll_ms:g} ms, {args.follow} "
          "visitors followed a second)\n")  # fmt: skip
    print("| offered events/s | ack -> live score visible p50 / p99 / max ms (achieved, lag, missing) "
          "| reference: ack -> profile readable, no model | ratio of p50 (median of rounds) |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    for rate in rates:
        live, ref = results[("live", rate)], results[("reference", rate)]
        ratios = [quantile(a[0], 0.5) / quantile(b[0], 0.5) for a, b in zip(live, ref, strict=True)]
        print(f"| {rate:,} | {fig(live)} | {fig(ref)} | {median(ratios):.2f} |")


if __name__ == "__main__":
    main()
