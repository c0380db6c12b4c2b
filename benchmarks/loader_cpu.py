"""The warehouse loader's thread CPU per event, over a SQLite log (issue #15).

    python -m benchmarks.loader_cpu [--events 80000] [--skip] [--heap 0] [--baseline-src ../main/src]

It prints, per event, the loader thread's CPU over its timed batches, and the part of it spent
reading the log and building the Arrow batch (the Python part: the rest is DuckDB, which runs
with the interpreter lock released, and the commit). With ``--baseline-src`` it alternates
another tree and this one (baseline then this tree, ``--rounds`` times, one process each, on
one log) and prints the medians and their ratio.
``--skip`` sets privacy suppressions as ``segflow serve`` does (empty: nothing is blocked);
``--heap N`` keeps N small objects alive first, as a process with the processor's state does
(the garbage collector then runs its full collections less often).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas  # noqa: F401  (pyarrow imports it lazily: not inside the timed batches)

from benchmarks.common import machine, run_in_tree
from segflow.clock import ManualClock
from segflow.config import WarehouseSettings
from segflow.identity import IdentityRules
from segflow.log.sqlite import SqliteEventLog
from segflow.privacy.suppression import SuppressionList
from segflow.spec import Event
from segflow.warehouse import loader as loader_module
from segflow.warehouse.loader import WarehouseLoader

BUILDERS = ("events_table", "encoded_table")  # the Arrow batch builder, before and after #15


def make_events(n: int, seed: int = 7) -> list[Event]:
    """~600-byte track events (benchmarks.payloads' shape), seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = rng.randrange(100_000)
        at = 1_700_000_000_000 + i * 37
        out.append(
            Event(type="track", message_id=f"m-{i:010d}", source_id="web", timestamp_ms=at,
                  received_at_ms=at, user_id=f"user-{user}", anonymous_id=f"anon-{user:08x}",
                  event=rng.choice(["Product Viewed", "Order Completed"]),
                  properties={"product_id": f"sku-{rng.randrange(5000)}",
                              "price": round(rng.uniform(1, 300), 2), "currency": "USD",
                              "quantity": rng.randrange(1, 5), "category": "Shoes"},
                  context={"ip": "203.0.113.7",
                           "library": {"name": "analytics.js", "version": "next-1.70.0"},
                           "page": {"path": "/products/shoes", "url": "https://shop.example/products/shoes"},
                           "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"},
                  original_timestamp_ms=at, sent_at_ms=at + 100)
        )  # fmt: skip
    return out


def timed(spent: dict[str, float], name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.thread_time() - t0

    return wrapper


def measure(
    events: int, batch: int, skip: bool, heap_objects: int, log_dir: Path
) -> tuple[float, float]:
    """Thread CPU seconds per event of the loader, and of its reading + building part."""
    path = log_dir / "log.sqlite"
    fresh = not path.exists()
    log = SqliteEventLog(str(path), partitions=4)
    if fresh:
        made = make_events(events)
        for i in range(0, len(made), 5_000):
            log.append(made[i : i + 5_000])
    settings = WarehouseSettings(batch_max_events=batch, release_between_batches=False)
    with tempfile.TemporaryDirectory() as d:
        loader = WarehouseLoader(log, None, Path(d) / "w.duckdb", ManualClock(5), settings)
        if skip:
            loader.skip = SuppressionList(b"k", IdentityRules()).blocks_event
        spent: dict[str, float] = {}
        for name in BUILDERS:
            if hasattr(loader_module, name):
                setattr(loader_module, name, timed(spent, "python", getattr(loader_module, name)))
        loader._read_log = timed(spent, "python", loader._read_log)  # type: ignore[method-assign]
        heap = [{"k": [i]} for i in range(heap_objects)]
        loader.run_once()  # the first batch opens the file and makes the schema: not timed
        spent.clear()
        cpu, read = 0.0, 0
        while True:
            t0 = time.thread_time()
            info = loader.run_once()
            cpu += time.thread_time() - t0
            if info.empty:
                break
            read += info.events_read
        loader.stop()
        del heap
    log.close()
    return cpu / read, spent.get("python", 0.0) / read


def in_tree(src: str, argv: list[str]) -> tuple[float, float]:
    """:func:`measure` run in a process whose ``segflow`` comes from ``src``."""
    out = run_in_tree("benchmarks.loader_cpu", src, [*argv, "--seconds-only"])
    cpu, python = out.split()[-2:]
    return float(cpu), float(python)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=80_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--skip", action="store_true")
    ap.add_argument("--heap", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--log-dir", default=None)
    ap.add_argument("--baseline-src", help="another tree's src/ to compare against")
    ap.add_argument("--seconds-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    log_dir = Path(args.log_dir or tempfile.mkdtemp())
    if not args.baseline_src:
        cpu, python = measure(args.events, args.batch, args.skip, args.heap, log_dir)
        if args.seconds_only:
            print(cpu, python)
            return
        print(
            f"{machine()}; skip={args.skip}, heap={args.heap}: loader thread CPU"
            f" {cpu * 1e6:.2f} us/event, of which reading + building the batch {python * 1e6:.2f}"
        )
        return
    argv = ["--events", str(args.events), "--batch", str(args.batch), "--heap", str(args.heap)]
    argv += ["--log-dir", str(log_dir), *(["--skip"] if args.skip else [])]
    here = str(Path(__file__).resolve().parent.parent / "src")
    theirs: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    in_tree(here, argv)  # warm-up: writes the log both use
    for _ in range(args.rounds):
        theirs.append(in_tree(args.baseline_src, argv))
        ours.append(in_tree(here, argv))
    print(f"machine: {machine()}; {args.rounds} rounds; skip={args.skip}, heap={args.heap}")
    print("| part | baseline us/event | this tree us/event | ratio |")
    print("| --- | --- | --- | --- |")
    for i, part in enumerate(("loader thread CPU", "reading + building the batch")):
        ratio = statistics.median(t[i] / o[i] for t, o in zip(theirs, ours, strict=True))
        base = statistics.median(t[i] for t in theirs) * 1e6
        mine = statistics.median(o[i] for o in ours) * 1e6
        print(f"| {part} | {base:.2f} | {mine:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
