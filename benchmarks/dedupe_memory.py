"""The embedded log's dedupe index with a window full of ids (#16): memory per id held, and
appends per second, tiered (recent ids in memory, older ones in sealed runs behind Bloom
filters) against everything in memory (main before #16, or the same code with
``dedupe_memory_ids`` above the window).

Run: ``python -m benchmarks.dedupe_memory [--ids 2000000] [--rounds 3] [--seconds 3]
[--baseline-src PATH]``

A template ``log.sqlite`` holds ``--ids`` rows in ``dedupe_log`` (one 24-hour window); a copy of
it is sealed into runs once (timed: what the collector's sealer thread does in the background
as the window fills). A third variant opens the sealed window with ranges of a tenth the size, so that its
sealer thread seals (and merges) while it appends. Each round copies the template of each
variant and, in a fresh child
process per variant (alternating, the order flipped every round), opens the log, reads ``RssAnon``/``RssFile`` from
``/proc/self/status`` before and after, then appends batches of 1,000 events (900 new ids,
100 ids of the window: duplicates) for ``--seconds``. ``--baseline-src`` runs the baseline
with another tree's ``src`` (e.g. a checkout of main before #16); without it the baseline is
this tree with every id in memory. Each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import commit, machine, median, tree_env

BATCH, DUPLICATES = 1_000, 100


def make_template(path: Path, ids: int) -> None:
    import sqlite3

    from segflow.log.dedupe import dedupe_key
    from segflow.log.sqlite import SqliteEventLog

    SqliteEventLog(path, partitions=8).close()
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO dedupe_log(key, received_at_ms) VALUES(?, ?)",
        ((dedupe_key("s", f"w{i}"), 1_000 + i // 100) for i in range(ids)),
    )
    con.commit()
    con.close()


def _rss_kb() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[name] = int(value.split()[0])
    return fields


def child(path: str, ids: int, seconds: float, memory_ids: int) -> None:
    """One variant in its own process: open, measure memory, append for ``seconds``."""
    import inspect

    from segflow.log.sqlite import SqliteEventLog
    from segflow.spec.events import Event

    kwargs = {"partitions": 8}
    if "dedupe_memory_ids" in inspect.signature(SqliteEventLog).parameters:
        kwargs["dedupe_memory_ids"] = memory_ids
    before = _rss_kb()
    started = time.perf_counter()
    log = SqliteEventLog(path, **kwargs)
    open_s = time.perf_counter() - started
    opened = _rss_kb()

    def event(message_id: str) -> Event:
        received = 1_000 + ids // 100
        return Event(
            type="track", message_id=message_id, source_id="s", timestamp_ms=received,
            received_at_ms=received, user_id=f"u{message_id}", event="E",
        )  # fmt: skip

    batches = [
        [event(f"n{b}-{i}") for i in range(BATCH - DUPLICATES)]
        + [event(f"w{(b * 7_919 + i * 104_729) % ids}") for i in range(DUPLICATES)]
        for b in range(int(seconds * 60))
    ]
    appended = duplicates = 0
    started = time.perf_counter()
    slowest = 0.0
    for batch in batches:
        call = time.perf_counter()
        positions = log.append(batch)
        slowest = max(slowest, time.perf_counter() - call)
        appended += len(batch)
        duplicates += positions.count(None)
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    appended_rss = _rss_kb()
    runs = getattr(log._dedupe, "_runs", None)
    probes = runs.probes if runs is not None else 0
    log.close()
    out = {
        "open_s": open_s,
        "anon_bytes_per_id": (opened["RssAnon"] - before["RssAnon"]) * 1024 / ids,
        "file_mb": (opened["RssFile"] - before["RssFile"]) / 1024,
        "anon_mb_after": (appended_rss["RssAnon"] - before["RssAnon"]) / 1024,
        "file_mb_after": (appended_rss["RssFile"] - before["RssFile"]) / 1024,
        "events_per_s": appended / elapsed,
        "slowest_append_ms": slowest * 1000,
        "duplicates_found": duplicates / max(1, appended // BATCH * DUPLICATES),
        "disk_probes_per_new_id": max(0, probes - duplicates) / max(1, appended - duplicates),
    }
    print(json.dumps(out))


def seal_template(template: Path, memory_ids: int) -> float:
    """Seal the template's window into runs (what a running collector's sealer thread has done
    by the time its window is full); returns the seconds it took."""
    from segflow.log.dedupe_runs import RunFiles, Sealer

    started = time.perf_counter()
    Sealer(RunFiles(template), memory_ids=memory_ids).build(wait=True)
    return time.perf_counter() - started


def run_child(src: Path, template: Path, root: Path, args: argparse.Namespace, memory: int) -> dict:
    target = root / "log.sqlite"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(template.parent, root)
    os.sync()  # the copy's writeback must not land in the timed appends
    env = tree_env(src)
    code = (
        "from benchmarks.dedupe_memory import child; "
        f"child({str(target)!r}, {args.ids}, {args.seconds}, {memory})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--memory-ids", type=int, default=200_000)
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1] / "src"
    sealing = f"tiered, sealing {args.memory_ids // 10:,}-id ranges meanwhile"
    variants = {
        "tiered": (here, args.memory_ids),
        sealing: (here, args.memory_ids // 10),
        "all in memory": (args.baseline_src or here, 10**12),
    }
    results: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        plain, tiered = Path(tmp) / "plain" / "log.sqlite", Path(tmp) / "tiered" / "log.sqlite"
        plain.parent.mkdir()
        make_template(plain, args.ids)
        shutil.copytree(plain.parent, tiered.parent)
        seal_s = seal_template(tiered, args.memory_ids)
        templates = {"tiered": tiered, sealing: tiered, "all in memory": plain}
        for round_ in range(args.rounds):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                src, memory = variants[name]
                results[name].append(
                    run_child(src, templates[name], Path(tmp) / "run", args, memory)
                )
    print(f"{machine()}, commit {commit()}, {args.ids:,} ids, load {os.getloadavg()[0]:.1f}")
    print(f"sealing the window into runs (once, before the rounds): {seal_s:.1f} s")
    print(
        "| variant | anon RSS bytes/id of the window, opened | file-backed RSS MB, opened |"
        " open s | anon / file-backed RSS MB after the appends | append events/s (per round) |"
        " slowest append ms | duplicates found | run reads per new id |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        m = {k: median([r[k] for r in rows]) for k in rows[0]}
        rates = " / ".join(f"{r['events_per_s']:,.0f}" for r in rows)
        print(
            f"| {name} | {m['anon_bytes_per_id']:,.1f} | {m['file_mb']:,.1f} | {m['open_s']:.1f} |"
            f" {m['anon_mb_after']:,.0f} / {m['file_mb_after']:,.0f} |"
            f" {m['events_per_s']:,.0f} ({rates}) | {m['slowest_append_ms']:.0f} |"
            f" {m['duplicates_found']:.0%} |"
            f" {m['disk_probes_per_new_id']:.2%} |"
        )
    for name in ("tiered", sealing):
        ratios = [
            t["events_per_s"] / b["events_per_s"]
            for t, b in zip(results[name], results["all in memory"], strict=True)
        ]
        print(f"append ratio {name} / all in memory (median of rounds): {median(ratios):.2f}x")


if __name__ == "__main__":
    main()
