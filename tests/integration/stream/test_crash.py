"""Crash test: SIGKILL `segflow process` mid-stream; after a restart the state equals an
uninterrupted run's over the same log (exactly-once state), on each embedded state store.

On RocksDB a second kill lands in RocksDB's own window: with 1 MB memtables the processor
flushes every few batches (an SST written, a fresh MANIFEST — ``max_manifest_file_size = 1`` —
and CURRENT swapped, the old WAL deleted), and the kill is sent the moment a new SST file
shows up in ``state/``: mid-flush or right after it. Recovery must drop the partial file or
replay the WAL, never lose or repeat a batch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.state import consumed as consumed_in
from tests.support.state import dump_state, state_of

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


STORES = {
    "sqlite": {"SEGFLOW_STREAM__STORE": "sqlite"},
    "rocksdb": {"SEGFLOW_STREAM__STORE": "rocksdb"},
    "rocksdb-flush": {"SEGFLOW_STREAM__STORE": "rocksdb", "SEGFLOW_STREAM__ROCKSDB_WRITE_BUFFER_MB": "1"},
}  # fmt: skip


def env(store: str) -> dict[str, str]:
    return {**os.environ, "SEGFLOW_LOG__PARTITIONS": "4", **STORES[store]}


def consumed(data_dir: Path) -> int:
    return consumed_in(state_of(data_dir))


def dump(data_dir: Path) -> dict[str, list[tuple[str, bytes]]]:
    return dump_state(state_of(data_dir))


def ssts(data_dir: Path) -> set[str]:
    state = data_dir / "state"
    return {p.name for p in state.glob("*.sst")} if state.is_dir() else set()


def kill_point(store: str, crashed: Path) -> Callable[[], bool]:
    """When to send SIGKILL: after a third of the events, and on ``rocksdb-flush`` as soon as
    an SST file appears that was not there before (a flush under way or just done)."""
    if store != "rocksdb-flush":
        return lambda: consumed(crashed) >= N // 3
    seen: set[str] = set()
    armed = [False]

    def due() -> bool:
        now = ssts(crashed)
        fresh = bool(now - seen) and armed[0]
        seen.update(now)
        armed[0] = armed[0] or consumed(crashed) >= N // 3
        return fresh

    return due


@pytest.mark.parametrize("store", sorted(STORES))
def test_sigkill_mid_stream_then_restart_equals_uninterrupted(
    store: str,
    make_data_dir: Callable[[str, list[Event]], Path],
    gen_events: Callable[..., list[Event]],
) -> None:
    events = gen_events(N)
    reference = make_data_dir("reference", events)
    crashed = make_data_dir("crashed", events)
    subprocess.run(cli(reference, "--until-idle"), check=True, env=env(store), capture_output=True)

    with subprocess.Popen(
        cli(crashed), env=env(store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            due = kill_point(store, crashed)
            while not due():  # wait for progress, not for time
                assert proc.poll() is None, "the processor exited before it was killed"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert N // 3 <= consumed(crashed) < N
    assert state_of(crashed).name == ("state.sqlite" if store == "sqlite" else "state")
    subprocess.run(cli(crashed, "--until-idle"), check=True, env=env(store), capture_output=True)

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
