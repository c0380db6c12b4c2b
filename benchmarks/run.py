"""``make bench``: every benchmark, one after another, each against its baseline in the same run.

    python -m benchmarks.run [--only ingest,rules] [--quick]

Each benchmark prints markdown rows (segflow, baseline, ratio, target) and the machine; this
runner collects them into ``benchmarks/latest.md`` with the date and commit, for copying into
BENCHMARKS.md's tables (figures are reviewed by a person before they replace the old ones: the
machines are noisy). ``--quick`` passes smaller sizes, for checking that every benchmark runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path

from benchmarks.common import commit, machine

# name -> (module, quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "decode": ("benchmarks.decode", ["--rounds", "2", "--batches", "20"]),
    "ingest": ("benchmarks.ingest", ["--rounds", "2", "--seconds", "0.5"]),
    "processor": ("benchmarks.processor", ["--events", "5000", "--people", "3000", "--rounds", "2", "--skip-lookup"]),
    "rules": ("benchmarks.rules", ["--rounds", "2", "--events", "1000", "--profiles", "100"]),
    "windows": ("benchmarks.windows", ["--rounds", "2", "--events", "5000", "--profiles", "300"]),
    "loader": ("benchmarks.loader", ["--events", "20000", "--executemany-events", "500", "--rounds", "2"]),
    "features": ("benchmarks.features", ["--profiles", "2000", "--events", "50000", "--rounds", "2"]),
    "imports": ("benchmarks.imports", ["--events", "5000", "--rounds", "2"]),
    "dedupe_memory": ("benchmarks.dedupe_memory", ["--ids", "100000", "--rounds", "2", "--seconds", "0.5", "--memory-ids", "20000"]),
    "reader_memory": ("benchmarks.reader_memory", ["--seconds", "3", "--rate", "5000"]),
    "ml": ("benchmarks.ml", ["--profiles", "5000", "--rounds", "2"]),
    "delivery": ("benchmarks.delivery", ["--rounds", "2", "--seconds", "0.5"]),
    "privacy": ("benchmarks.privacy", ["--events", "5000", "--others", "5000", "--rounds", "2"]),
    "scaleout": ("benchmarks.scaleout", ["--events", "3000", "--people", "2000", "--rounds", "1", "--settle", "6"]),
    "activation": ("benchmarks.activation", ["--rounds", "1", "--seconds", "1", "--plan", "1:500", "--lookup-seconds", "1"]),
    "end_to_end": ("benchmarks.end_to_end", ["--rounds", "1", "--seconds", "2", "--warmup-seconds", "1", "--users", "2000"]),
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="", help="comma-separated names: " + ", ".join(BENCHMARKS))
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/latest.md"))
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmarks: {', '.join(unknown)}")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    sections = [f"# Benchmark run {today}, commit {commit()}\n\nMachine: {machine()}\n"]
    failed = []
    for name in names:
        module, quick = BENCHMARKS[name]
        cmd = [sys.executable, "-m", module, *(quick if args.quick else [])]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(done.stderr[-4000:])
        print(done.stdout, flush=True)
        if done.returncode != 0:
            failed.append(name)
        sections.append(
            f"## {name}\n\nCommand: `python -m {module} {' '.join(cmd[3:])}`\n\n{done.stdout}"
        )
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out}; copy the rows you accept into BENCHMARKS.md")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
