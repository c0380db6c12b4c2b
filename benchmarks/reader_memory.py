"""Memory of a process that reads the state through RocksDB secondaries while the processor
writes it (#16): this tree (one shared secondary per process, a 16 MB reader block cache)
against a baseline tree (``--baseline-src``, e.g. main: one secondary per reader, 64 MB cache
each).

Run: ``python -m benchmarks.reader_memory [--seconds 25] [--rounds 1] [--readers 3]
[--rate 20000] [--baseline-src PATH]``

Each round runs each variant (alternating, the order flipped every round) as two fresh
processes on a fresh directory: a writer (``RocksStateStore``, the processor's 64 MB write
buffer, unsynced) committing ``--rate`` keys a second over 200,000 profiles (216-byte values,
one commit every 10 ms), and a reader opening ``--readers`` readers with
``api.state_refresh_ms``'s 5 ms (the HTTP worker opens three: the API's and two change feeds')
reading 2,000 random keys a second through them. The reader samples its ``RssAnon`` every
second, with its first reader's memtable and block-cache bytes (RocksDB properties).
Reported: RssAnon after 2 s, at the end and at most; memtables and block cache at most
(per instance); medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, commit, machine, median, tree_env


def _rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def writer(path: str, rate: int, seconds: float) -> None:
    from segflow.stream.state.rocksdb import RocksStateStore

    store = RocksStateStore(path, sync=False)
    rng, per, n = random.Random(1), max(1, rate // 100), 0
    value = os.urandom(208)
    print("open", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        tx = store.begin_global()
        for _ in range(per):
            tx.set("profile", f"p{rng.randrange(200_000)}", value + n.to_bytes(8, "big"))
            n += 1
        tx.commit()
        time.sleep(max(0.0, 0.01 - (time.monotonic() - started)))
    store.close()


def reader(path: str, readers: int, seconds: float) -> None:
    from segflow.stream.state.rocksdb import open_reader

    opened = [open_reader(path, refresh_ms=5) for _ in range(readers)]
    rng, samples = random.Random(2), []
    started = next_sample = time.monotonic()
    while time.monotonic() - started < seconds:
        for r in opened:
            for _ in range(max(1, 20 // readers)):
                r.get("profile", f"p{rng.randrange(200_000)}")
        time.sleep(0.01)
        if time.monotonic() >= next_sample:
            next_sample += 1.0
            db = opened[0].db
            mem = cache = 0
            if db is not None:
                mem = db.property_int_value("rocksdb.size-all-mem-tables") or 0
                cache = db.property_int_value("rocksdb.block-cache-usage") or 0
            t = round(time.monotonic() - started, 1)
            samples.append({"t": t, "rss": _rss_anon_mb(), "mem": mem >> 20, "cache": cache >> 20})
    for r in opened:
        r.close()
    print(json.dumps(samples), flush=True)


def run_variant(src: str, readers: int, rate: int, seconds: float) -> dict[str, float]:
    env = tree_env(src)
    with tempfile.TemporaryDirectory(prefix="reader-memory-") as tmp:
        state = str(Path(tmp) / "state")
        cmd = [sys.executable, "-m", "benchmarks.reader_memory"]
        w = subprocess.Popen(
            [*cmd, "--child", "writer", state, str(rate), str(seconds + 2)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert w.stdout is not None and w.stdout.readline().strip() == "open"
        r = subprocess.run(
            [*cmd, "--child", "reader", state, str(readers), str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        w.wait()
    samples = json.loads(r.stdout.strip().splitlines()[-1])
    early = next((s for s in samples if s["t"] >= 2), samples[0])
    return {
        "rss_start": early["rss"],
        "rss_end": samples[-1]["rss"],
        "rss_max": max(s["rss"] for s in samples),
        "mem_max": max(s["mem"] for s in samples),
        "cache_max": max(s["cache"] for s in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--baseline-src", help="another tree's src/ (e.g. a checkout of main)")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        role, path, *rest = args.child
        if role == "writer":
            writer(path, int(rest[0]), float(rest[1]))
        else:
            reader(path, int(rest[0]), float(rest[1]))
        return
    variants = {"shared (this tree)": str(ROOT / "src")}
    if args.baseline_src:
        variants["baseline"] = args.baseline_src
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for n in range(args.rounds):
        order = list(variants) if n % 2 == 0 else list(reversed(variants))
        for name in order:
            results[name].append(run_variant(variants[name], args.readers, args.rate, args.seconds))
            print(name, results[name][-1], flush=True)
    print(f"{machine()}, commit {commit()}, load {os.getloadavg()[0]:.1f}")
    print("| variant | RssAnon after 2 s / end / max MB | memtables max MB | block cache max MB |")
    print("| --- | --- | --- | --- |")
    for name, rows in results.items():
        m = {k: median([r[k] for r in rows]) for k in rows[0]}
        print(
            f"| {name} | {m['rss_start']:.0f} / {m['rss_end']:.0f} / {m['rss_max']:.0f} "
            f"| {m['mem_max']:.0f} | {m['cache_max']:.0f} |"
        )


if __name__ == "__main__":
    main()
