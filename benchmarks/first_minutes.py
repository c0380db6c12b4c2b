"""The first minutes of a new user: ``make demo`` on a clean clone, until live traffic.

Run: ``python -m benchmarks.first_minutes [--keep]``

What #17 names as targets: the demo's ``.venv`` <= 400 MB, and live traffic <= 90 s after
``make demo`` on this machine. The benchmark clones the repository's ``HEAD`` into a temp
directory (what a user gets from ``git clone``), runs ``make demo`` there with ``--no-browser``
on a free port, and reports:

- **install**: seconds from ``make demo`` until ``segflow demo`` starts (the Makefile's runtime
  step: a venv, ``pip install -e .`` with the compiled rule kernel built on the way);
- **to live traffic**: seconds from ``make demo`` until the demo prints ``live traffic at``
  (the server up, the segments defined, six weeks of history sent and processed, the models
  trained and their segments backfilled);
- **.venv size** (``du``), and its largest packages.

pip's download cache is the machine's: a machine that never downloaded these wheels adds
their download time (~200 MB) to the install; the report says whether the cache was warm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def _largest(site: Path, n: int = 8) -> list[tuple[str, float]]:
    sizes = [(p.name, _du_mb(p)) for p in site.iterdir() if p.is_dir() or p.suffix == ".so"]
    return sorted(sizes, key=lambda x: -x[1])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segflow-first-"))
    clone = work / "segflow"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = _free_port()
    demo_args = f"--no-browser --port {port} --data-dir {work / 'data'}"
    env = {**os.environ, "PYTHON": sys.executable}
    started = time.monotonic()
    install_done = live = None
    with (work / "demo.log").open("w") as log:
        demo = subprocess.Popen(
            ["make", "demo", f"DEMO_ARGS={demo_args}"], cwd=clone, env=env,
            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
        )  # fmt: skip
        assert demo.stdout is not None
        for line in demo.stdout:
            log.write(line)
            if install_done is None and "segflow demo" in line:  # make echoes the command
                install_done = time.monotonic() - started
            if "live traffic at" in line:
                live = time.monotonic() - started
                break
            if time.monotonic() - started > args.timeout:
                break
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
    venv = clone / ".venv"
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = _du_mb(venv)
    cache = Path.home() / ".cache" / "pip"
    print(f"install {install_done and round(install_done, 1)} s; to live traffic {live and round(live, 1)} s"
          f" (target <= 90 s); .venv {size:.0f} MB (target <= 400 MB); pip cache "
          f"{'warm' if cache.exists() else 'cold'}")  # fmt: skip
    print("largest: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in _largest(site)))
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
