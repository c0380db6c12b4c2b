"""The membership-read phase of ``benchmarks.activation`` alone, for before/after runs of a change.

Run: ``python -m benchmarks.activation_reads [--rounds 2] [--seconds 6] [--rate 2000]``

One ``segflow serve`` on core 0 (as in ``benchmarks.activation``), 3,000 ``Signed Up`` events
offered at 1,000/s to fill its state, then ``wrk`` on core 1 reading
``GET /api/v1/profiles/user_id:{id}/segments`` capped at ``--rate`` for ``--seconds``, per round.
No baseline: ``benchmarks.activation`` has the FastAPI + SQLite one. Run it on both sides of a
change, alternating (``git stash`` / ``git stash pop``), and compare the rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import activation
from benchmarks.common import commit, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rate", type=int, default=2000)
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="segflow-bench-reads-"))
    port = activation.free_port()
    (tmp / "receiver.py").write_text(activation.RECEIVER)
    receiver = subprocess.Popen(["taskset", "-c", "1", sys.executable, str(tmp / "receiver.py"), str(port)])  # fmt: skip
    system = None
    try:
        activation.wait_listening(port, receiver)
        system = activation.start_segflow(tmp, f"http://127.0.0.1:{port}/hook", 100)
        activation.freshness(system, f"http://127.0.0.1:{port}/seen", 1000, 3.0, "u")
        users = [f"u-{i}-{k}" for i in range(600) for k in range(activation.PER_REQUEST)]
        time.sleep(3)  # the warehouse loader and the delivery worker settle
        print(f"machine: {machine()}  commit: {commit()}")
        for rnd in range(args.rounds):
            print(rnd, activation.reads(system, tmp, users, args.seconds, args.rate), flush=True)
    finally:
        if system is not None:
            system.stop()
        receiver.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
