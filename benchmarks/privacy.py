"""Privacy: how long a deletion regulation takes for a profile with 100,000 events.

    python -m benchmarks.privacy [--events 100000] [--others 100000] [--rounds 5]

One data directory is built once: the target person (an identify, then ``--events`` tracks of
"Order Completed", so it is in a segment) among ``--others`` events of 10,000 other people,
processed by the processor (state, timelines, memberships) and loaded into the warehouse.
Each round copies it twice and runs, interleaved:

- **segflow**: the serve process's parts (``segflow.server.compose``) with their services
  running; ``delete`` by email, the runner runs it to ``finished``: exits, the owners'
  commands, every store, then compaction (the target: <= 60 s on the embedded stores);
- **baseline** (``benchmarks/baselines/naive_erase.py``): with segflow stopped, the same
  deletion by hand in plain SQL over every store (full scans: no timeline index), then the
  same compaction functions.

Reported: medians of the time to erase (without compaction), of compaction, of the total,
and the median of the per-round ratios. A warm-up round is not counted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.baselines.naive_erase import erase_by_hand
from benchmarks.common import commit, machine
from segflow.config import Settings, load_settings
from segflow.privacy.compact import compact_data_dir
from segflow.server.compose import assemble
from segflow.serving.runtime import Runtime
from segflow.spec import Event

T0 = 1_700_000_000_000
TARGET = {"user_id": "bench-target", "anonymous_id": "bench-anon", "email": "target@bench.example"}


def settings(data: Path) -> Settings:
    return load_settings(
        env={},
        overrides={
            "server": {"data_dir": str(data)},
            "ml": {"schedule_enabled": False},
            "warehouse": {"flush_interval_ms": 50},
            "stream": {"poll_interval_ms": 20, "batch_size": 5000},
            "privacy": {"notify_timeout_s": 10.0},
        },
    )


def events(n_target: int, n_others: int) -> list[Event]:
    out = [
        Event(type="identify", message_id="t-identify", source_id="web", timestamp_ms=T0,
              received_at_ms=T0, user_id=TARGET["user_id"], anonymous_id=TARGET["anonymous_id"],
              traits={"email": TARGET["email"], "plan": "pro"})
    ]  # fmt: skip
    out += [
        Event(type="track", message_id=f"t-{i}", source_id="web", timestamp_ms=T0 + i,
              received_at_ms=T0 + i, user_id=TARGET["user_id"], event="Order Completed",
              properties={"revenue": i % 50, "sku": f"sku-{i % 97}"})
        for i in range(n_target)
    ]  # fmt: skip
    out += [
        Event(type="track", message_id=f"o-{i}", source_id="web", timestamp_ms=T0 + i,
              received_at_ms=T0 + i, user_id=f"other-{i % 10_000}",
              event=("Order Completed", "Viewed")[i % 2], properties={"revenue": i % 50})
        for i in range(n_others)
    ]  # fmt: skip
    return out


def build(data: Path, n_target: int, n_others: int) -> dict[str, Any]:
    runtime = Runtime.open(settings(data))
    parts = assemble(runtime)
    try:
        parts.segments.put_segment("buyers", 'did "Order Completed"')
        parts.processor.set_evaluator(parts.segments.program())
        batch = events(n_target, n_others)
        for start in range(0, len(batch), 20_000):
            runtime.log.append(batch[start : start + 20_000])
        while parts.processor.run_once() or parts.processor.backfill_step():
            pass
        parts.loader.run_until_idle()
    finally:
        parts.services[0].stop()  # the stores
        runtime.close()
    files = {p.name: p.stat().st_size for p in data.iterdir() if p.is_file()}
    return {"bytes": sum(files.values()), "files": files}


def run_segflow(data: Path) -> tuple[float, float, dict[str, Any]]:
    """(erase seconds, compaction seconds, result counts) of one regulation."""
    runtime = Runtime.open(settings(data))
    parts = assemble(runtime)
    assert parts.privacy is not None
    started = [s for s in parts.services if s is not parts.privacy.runner]
    for service in started:
        service.start()
    try:
        reg = parts.privacy.service.submit(
            "delete", [{"type": "email", "value": TARGET["email"]}], actor="bench"
        )
        t0 = time.perf_counter()
        parts.privacy.runner.run_once()
        total = time.perf_counter() - t0
        done = parts.privacy.service.get(reg.id)
        assert done.status == "finished", done.error
        spent = done.result.get("compaction", {})
        compact_s = sum(v for k, v in spent.items() if k.endswith("_s"))
        return total - compact_s, compact_s, done.result
    finally:
        for service in reversed(started):
            service.stop()
        runtime.close()


def run_baseline(data: Path) -> tuple[float, float, dict[str, int]]:
    t0 = time.perf_counter()
    counts = erase_by_hand(data, list(TARGET.items()))
    erase = time.perf_counter() - t0
    t1 = time.perf_counter()
    compact_data_dir(data)
    return erase, time.perf_counter() - t1, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000, help="events of the deleted person")
    ap.add_argument("--others", type=int, default=100_000, help="events of 10,000 others")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="segflow-privacy-bench-"))
    try:
        source = root / "source"
        t0 = time.perf_counter()
        built = build(source, args.events, args.others)
        print(
            f"built in {time.perf_counter() - t0:.1f} s: {built['bytes'] / 1e6:.1f} MB ({built['files']})"
        )
        rows: dict[str, list[float]] = {
            k: [] for k in ("s_erase", "s_compact", "b_erase", "b_compact")
        }
        result: dict[str, Any] = {}
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            copies = {k: root / f"{k}-{uuid.uuid4().hex[:6]}" for k in ("segflow", "baseline")}
            for copy in copies.values():
                shutil.copytree(source, copy)
            s_erase, s_compact, result = run_segflow(copies["segflow"])
            b_erase, b_compact, _ = run_baseline(copies["baseline"])
            for copy in copies.values():
                shutil.rmtree(copy)
            print(
                f"round {rnd}: segflow {s_erase:.2f}+{s_compact:.2f} s, baseline {b_erase:.2f}+{b_compact:.2f} s",
                flush=True,
            )
            if rnd:
                for key, value in zip(rows, (s_erase, s_compact, b_erase, b_compact), strict=True):
                    rows[key].append(value)
        report(args, rows, result)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(args: argparse.Namespace, rows: dict[str, list[float]], result: dict[str, Any]) -> None:
    med = {k: statistics.median(v) for k, v in rows.items()}
    totals = [(se + sc, be + bc) for se, sc, be, bc in zip(*rows.values(), strict=True)]
    ratio_total = statistics.median(b / s for s, b in totals)
    ratio_erase = statistics.median(
        b / s for s, b in zip(rows["s_erase"], rows["b_erase"], strict=True)
    )
    print(
        f"\nmachine: {machine()}; commit {commit()}; person's events={args.events}, others={args.others}"
    )
    print(f"segflow counts: {result.get('counts')}")
    print(
        "| segflow erase s | segflow compact s | segflow total s | baseline erase s | baseline compact s | baseline total s | ratio erase (baseline/segflow) | ratio total | target |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {med['s_erase']:.2f} | {med['s_compact']:.2f} | {med['s_erase'] + med['s_compact']:.2f}"
        f" | {med['b_erase']:.2f} | {med['b_compact']:.2f} | {med['b_erase'] + med['b_compact']:.2f}"
        f" | {ratio_erase:.2f}x | {ratio_total:.2f}x | total <= 60 s |"
    )


if __name__ == "__main__":
    main()
