"""The warehouse loader's CPU per event as it runs inside ``segflow serve`` (issue #15).

    python -m benchmarks.loader_serve [--preload 300000] [--events 100000] [--batch 20000]
        [--rounds 3] [--baseline-src ../main/src]

``benchmarks.loader_cpu`` loads into an empty table with the file kept open; in ``segflow
serve`` the ``events`` table grows by the benchmark's ~300-600k events a round, the change
feed (identity links, membership changes) arrives with the events, and the file is released
between micro-batches. This benchmark reproduces that: a warehouse that already holds
``--preload`` events and their changes (made once, copied for each measurement), then
micro-batches of ``--batch`` events and their changes from a SQLite log and a change feed,
``release_between_batches`` on, the loader's clock advanced a flush interval (1 s) a batch, and
the file held between batches as a started loader holds it (:meth:`watch_release_requests`,
on a tree that has it). Its final release (a checkpoint of all it held) is counted. Per
event it prints the process's CPU (every thread: DuckDB runs its own) and the loader
thread's (``time.thread_time``), and per step of the batch (read the log, insert, apply the
changes, commit, open + close) the loader thread's and the process's CPU meanwhile
(``step/process``), and the peak RSS.

The changes are generated, seeded, in the shape the end-to-end benchmark's processor makes
them: a user's first event links its ``anonymous_id`` (and ``user_id``, 3 users in 4) to its
profile; ``--members`` of the events (0.3) enter or leave one of 10 segments.
With ``--baseline-src`` it alternates another tree and this one (one process each, same
inputs) and prints medians and the median ratio.
"""

from __future__ import annotations

import argparse
import pickle
import random
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas  # noqa: F401  (pyarrow imports it lazily: not inside the timed batches)

from benchmarks.common import machine, run_in_tree
from benchmarks.loader_cpu import make_events
from segflow.clock import ManualClock
from segflow.config import WarehouseSettings
from segflow.log.memory import ListChangeFeed
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.spec.changes import IdentityLinked, MembershipChange
from segflow.warehouse.loader import WarehouseLoader

PARTS = ("read", "insert", "changes", "commit", "open+close")
SEGMENTS = [f"segment_{i}" for i in range(10)]


def make_changes(events: list[Event], members: float, seed: int = 3) -> list[Any]:
    """The change feed of ``events`` (module docstring), in event order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    inside: set[tuple[str, str]] = set()
    out: list[Any] = []
    sequence = 0
    for e in events:
        user = e.user_id or ""
        profile = f"p-{user}"
        at = e.timestamp_ms
        if user not in seen:
            seen.add(user)
            sequence += 1
            out.append(IdentityLinked(profile_id=profile, id_type="anonymous_id",
                                      id_value=e.anonymous_id or "", at_ms=at, sequence=sequence))  # fmt: skip
            if int(user.rsplit("-", 1)[-1]) % 4:
                sequence += 1
                out.append(IdentityLinked(profile_id=profile, id_type="user_id", id_value=user,
                                          at_ms=at, sequence=sequence))  # fmt: skip
        if rng.random() < members:
            segment = rng.choice(SEGMENTS)
            key = (profile, segment)
            kind = "exited" if key in inside else "entered"
            inside.symmetric_difference_update({key})
            sequence += 1
            out.append(MembershipChange(profile_id=profile, segment=segment, kind=kind, at_ms=at,
                                        sequence=sequence, recorded_at_ms=at + 5))  # fmt: skip
    return out


def prepare(work: Path, preload: int, events: int, members: float) -> None:
    """The SQLite log (``preload + events`` events), the changes and the preloaded warehouse
    ``template.duckdb`` (the first ``preload`` events and their changes loaded), once."""
    if (work / "template.duckdb").exists():
        return
    made = make_events(preload + events)
    log = SqliteEventLog(str(work / "log.sqlite"), partitions=4)
    for i in range(0, len(made), 5_000):
        log.append(made[i : i + 5_000])
    changes = make_changes(made, members)
    (work / "changes.pickle").write_bytes(pickle.dumps(changes))
    feed = ListChangeFeed()
    for change in make_changes(made[:preload], members):
        feed.add(change)
    settings = WarehouseSettings(batch_max_events=50_000, release_between_batches=False)
    loader = WarehouseLoader(_Upto(log, preload), feed, work / "template.duckdb", ManualClock(5),
                             settings)  # fmt: skip
    loader.run_until_idle()
    loader.stop()
    log.close()


class _Upto:
    """``log`` seen up to its first ``n`` records (in append order: ``n / partitions`` each)."""

    def __init__(self, log: SqliteEventLog, n: int) -> None:
        self.log, self.partitions = log, log.partitions
        self.ends = {p: o for p, o in log.end_offsets().items()}
        self.limit = {p: _preloaded(log, p, n) for p in self.ends}

    def read_encoded(self, partition: int, offset: int, n: int) -> list[tuple[int, bytes]]:
        got = self.log.read_encoded(partition, offset, n)
        return [(o, b) for o, b in got if o < self.limit[partition]]

    def end_offsets(self) -> dict[int, int]:
        return dict(self.limit)

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        self.log.commit(group, offsets)


def _preloaded(log: SqliteEventLog, partition: int, n: int) -> int:
    """The offset of ``partition`` below which the records are among the first ``n`` appended
    (message ids ``m-<index>``, made by :func:`make_events`)."""
    rows = log.read(partition, 0, 10_000_000)
    return sum(1 for r in rows if int(r.event.message_id[2:]) < n)


def timed(spent: dict[str, float], name: str, f: Any) -> Any:
    """``f``, adding its thread's CPU time to ``spent[name]`` and the process's (every thread
    meanwhile: DuckDB's own) to ``spent[name + "/process"]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, p0 = time.thread_time(), _process_cpu()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.thread_time() - t0
            key = f"{name}/process"
            spent[key] = spent.get(key, 0.0) + _process_cpu() - p0

    return wrapper


def measure(work: Path, batch: int) -> dict[str, float]:
    """CPU seconds per event: ``process``, ``thread`` and the thread's :data:`PARTS`."""
    log = SqliteEventLog(str(work / "log.sqlite"), partitions=4)
    feed = ListChangeFeed()
    for change in pickle.loads((work / "changes.pickle").read_bytes()):
        feed.add(change)
    settings = WarehouseSettings(batch_max_events=batch, release_between_batches=True)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.duckdb"
        shutil.copyfile(work / "template.duckdb", path)
        clock = ManualClock(5)
        loader = WarehouseLoader(log, feed, path, clock, settings)
        spent: dict[str, float] = {}
        _instrument(loader, spent)
        if hasattr(loader, "watch_release_requests"):  # as loader.start() does in serve
            loader.watch_release_requests()
        process0 = _process_cpu()
        thread0 = time.thread_time()
        read = 0
        while True:
            info = loader.run_once()
            clock.advance(settings.flush_interval_ms)  # serve: a batch a flush interval
            if info.empty:
                break
            read += info.events_read
        loader.stop()  # timed: a held file is checkpointed when it is released
        out = {"process": _process_cpu() - process0, "thread": time.thread_time() - thread0}
        out.update(spent)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.close()
    return {**{k: v / read for k, v in out.items()}, "peak_rss_mb": rss_mb}


def _instrument(loader: WarehouseLoader, spent: dict[str, float]) -> None:
    """Time the loader's steps on its thread (``PARTS``), whichever tree it comes from."""
    loader._read_log = timed(spent, "read", loader._read_log)  # type: ignore[method-assign]
    loader._insert_batch = timed(spent, "insert", loader._insert_batch)  # type: ignore[method-assign]
    loader._apply_changes = timed(spent, "changes", loader._apply_changes)  # type: ignore[method-assign]
    loader._connection = timed(spent, "open+close", loader._connection)  # type: ignore[method-assign]
    loader._release = timed(spent, "open+close", loader._release)  # type: ignore[method-assign]
    connection = loader._connection

    def wrapped_connection() -> Any:
        return _TimedConnection(connection(), spent)

    loader._connection = wrapped_connection  # type: ignore[method-assign]


class _TimedConnection:
    """A DuckDB connection whose ``COMMIT`` is timed into ``spent["commit"]``."""

    def __init__(self, con: Any, spent: dict[str, float]) -> None:
        self._con, self._spent = con, spent

    def execute(self, sql: str, *args: Any) -> Any:
        if sql != "COMMIT":
            return self._con.execute(sql, *args)
        return timed(self._spent, "commit", self._con.execute)(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_tree(src: str, argv: list[str]) -> dict[str, float]:
    """:func:`measure` run in a process whose ``segflow`` comes from ``src``."""
    fields = run_in_tree("benchmarks.loader_serve", src, [*argv, "--seconds-only"]).split()
    return {k: float(v) for k, v in zip(fields[::2], fields[1::2], strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preload", type=int, default=300_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--members", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work-dir", default=None, help="keeps the log and template between runs")
    ap.add_argument("--baseline-src", help="another tree's src/ to compare against")
    ap.add_argument("--seconds-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.preload, args.events, args.members)
    if not args.baseline_src:
        got = measure(work, args.batch)
        if args.seconds_only:
            print(" ".join(f"{k} {v}" for k, v in got.items()))
            return
        print(f"{machine()}; {args.preload:,} events preloaded, batches of {args.batch:,}:")
        rss = got.pop("peak_rss_mb")
        print("  " + ", ".join(f"{k} {v * 1e6:.2f}" for k, v in got.items()) + " us/event")
        print(f"  peak RSS {rss:.0f} MB")
        return
    argv = ["--preload", str(args.preload), "--events", str(args.events)]
    argv += ["--batch", str(args.batch), "--members", str(args.members), "--work-dir", str(work)]
    here = str(Path(__file__).resolve().parent.parent / "src")
    theirs: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    for _ in range(args.rounds):
        theirs.append(in_tree(args.baseline_src, argv))
        ours.append(in_tree(here, argv))
    print(f"machine: {machine()}; {args.rounds} rounds; {args.preload:,} events preloaded,")
    print(f"  {args.events:,} loaded in batches of {args.batch:,}, release between batches")
    print("| CPU per event | baseline us | this tree us | ratio |")
    print("| --- | --- | --- | --- |")
    for part in ("process", "thread", *PARTS, *(f"{p}/process" for p in PARTS)):
        pairs = [(t.get(part, 0.0), o.get(part, 0.0)) for t, o in zip(theirs, ours, strict=True)]
        base = statistics.median(t for t, _ in pairs) * 1e6
        mine = statistics.median(o for _, o in pairs) * 1e6
        ratios = [t / o for t, o in pairs if o]
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        print(f"| {part} | {base:.2f} | {mine:.2f} | {ratio} |")
    rss = [statistics.median(r["peak_rss_mb"] for r in side) for side in (theirs, ours)]
    print(f"| peak RSS (MB) | {rss[0]:.0f} | {rss[1]:.0f} | |")


if __name__ == "__main__":
    main()
