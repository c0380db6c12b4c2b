"""Crash test: SIGKILL `segflow process` mid-stream; after a restart the state equals an
uninterrupted run's over the same log (exactly-once state)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from segflow.spec import Event

pytestmark = pytest.mark.slow

N = 12_000


def cli(data_dir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "segflow.cli.main",
        "process",
        "--data-dir",
        str(data_dir),
        "--batch-size",
        "25",
        *args,
    ]


def env() -> dict[str, str]:
    return {**os.environ, "SEGFLOW_LOG__PARTITIONS": "4"}


def consumed(data_dir: Path) -> int:
    path = data_dir / "state.sqlite"
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(
                con.execute("SELECT COALESCE(SUM(next_offset), 0) FROM offsets").fetchone()[0]
            )
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def dump(data_dir: Path) -> dict[str, list[tuple[str, bytes]]]:
    con = sqlite3.connect(data_dir / "state.sqlite")
    out: dict[str, list[tuple[str, bytes]]] = {}
    for ns, key, value in con.execute("SELECT ns, key, value FROM kv ORDER BY ns, key"):
        out.setdefault(ns, []).append((key, bytes(value)))
    offsets = con.execute(
        "SELECT partition, next_offset FROM offsets ORDER BY partition"
    ).fetchall()
    out["_offsets"] = [(str(p), str(o).encode()) for p, o in offsets]
    con.close()
    return out


def test_sigkill_mid_stream_then_restart_equals_uninterrupted(
    make_data_dir: Callable[[str, list[Event]], Path], gen_events: Callable[..., list[Event]]
) -> None:
    events = gen_events(N)
    reference = make_data_dir("reference", events)
    crashed = make_data_dir("crashed", events)
    subprocess.run(cli(reference, "--until-idle"), check=True, env=env(), capture_output=True)

    with subprocess.Popen(
        cli(crashed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            while consumed(crashed) < N // 3:  # wait for progress, not for time
                assert proc.poll() is None, "the processor exited before it was killed"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert N // 3 <= consumed(crashed) < N
    subprocess.run(cli(crashed, "--until-idle"), check=True, env=env(), capture_output=True)

    expected, got = dump(reference), dump(crashed)
    assert consumed(crashed) == N
    assert {
        "merge",
        "conflict",
        "outbox",
        "timeline",
    } <= expected.keys()  # the stream exercised merges
    assert got.keys() == expected.keys()
    for ns in expected:
        assert got[ns] == expected[ns], ns
