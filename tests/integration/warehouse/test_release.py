"""The loader holds ``warehouse.duckdb`` between batches and lets it go when another process
asks (docs/warehouse.md, "Who owns the file"): real processes, a real file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segflow.clock import ManualClock
from segflow.config import WarehouseSettings
from segflow.log.memory import MemoryEventLog
from segflow.spec import Event
from segflow.warehouse.connection import ask_release, open_warehouse, release_asked, release_marker
from segflow.warehouse.loader import RELEASE_ASKED_S, WarehouseLoader

# Opens the file from another process: with segflow's connect (which asks for it), or with
# DuckDB alone (which does not, and fails at once while the file is held).
_READ = """
import sys, duckdb
from segflow.warehouse.connection import connect
if sys.argv[2] == "segflow":
    con = connect(sys.argv[1], read_only=True, timeout_s=60)
else:
    con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM events").fetchone()[0])
"""


def _read_from_another_process(path: Path, how: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _READ, str(path), how], capture_output=True, text=True, timeout=120
    )


def _events(n: int, prefix: str) -> list[Event]:
    return [
        Event(type="track", message_id=f"{prefix}{i}", source_id="web", timestamp_ms=i,
              received_at_ms=i, user_id=f"u{i % 7}", event="Clicked", properties={"i": i})
        for i in range(n)
    ]  # fmt: skip


def _count(path: Path) -> int:
    with open_warehouse(path) as con:  # in-process: shares the loader's instance, never waits
        row = con.execute("SELECT count(*) FROM events").fetchone()
    return int(row[0]) if row else 0


def _holding(
    tmp_path: Path, log: MemoryEventLog, clock: ManualClock | None = None, **kw: object
) -> WarehouseLoader:
    """A loader that holds its file between batches as a started one does; batches are run by
    the test (``run_once``), so none comes while the test looks."""
    settings = WarehouseSettings(**kw)  # type: ignore[arg-type]
    path = tmp_path / "warehouse.duckdb"
    loader = WarehouseLoader(log, None, path, clock or ManualClock(1), settings)
    loader.watch_release_requests()
    return loader


def test_a_held_file_is_released_when_another_process_asks(tmp_path: Path) -> None:
    log = MemoryEventLog(partitions=2)
    log.append(_events(50, "a"))
    loader = _holding(tmp_path, log)
    try:
        assert loader.run_once().events_loaded == 50
        # held between batches: DuckDB alone cannot open it from another process
        plain = _read_from_another_process(loader.path, "duckdb")
        assert plain.returncode != 0 and "lock" in plain.stderr.lower()
        # segflow's connect asks for it and gets it, with every loaded event
        asked = _read_from_another_process(loader.path, "segflow")
        assert asked.returncode == 0, asked.stderr
        assert int(asked.stdout) == 50
        assert release_asked(loader.path, within_s=60)
        # the loader goes on loading afterwards
        log.append(_events(30, "b"))
        assert loader.run_once().events_loaded == 30
        assert _count(loader.path) == 80
    finally:
        loader.stop()
    assert int(_read_from_another_process(loader.path, "duckdb").stdout) == 80  # stop released it


def test_an_idle_loader_releases_a_held_file(tmp_path: Path) -> None:
    log = MemoryEventLog(partitions=1)
    log.append(_events(20, "a"))
    loader = _holding(tmp_path, log)
    try:
        assert loader.run_once().events_loaded == 20
        assert loader.run_once().empty  # nothing new: let go
        plain = _read_from_another_process(loader.path, "duckdb")  # asks for nothing
        assert plain.returncode == 0, plain.stderr
        assert int(plain.stdout) == 20
    finally:
        loader.stop()


def test_a_file_is_held_at_most_hold_file_max_ms(tmp_path: Path) -> None:
    log = MemoryEventLog(partitions=1)
    clock = ManualClock(1)
    loader = _holding(tmp_path, log, clock, hold_file_max_ms=5_000)
    try:
        log.append(_events(5, "a"))
        assert loader.run_once().events_loaded == 5
        clock.advance(4_000)
        log.append(_events(5, "b"))
        assert loader.run_once().events_loaded == 5
        assert loader._con is not None  # busy, held for 4 s
        clock.advance(1_000)
        log.append(_events(5, "c"))
        assert loader.run_once().events_loaded == 5
        plain = _read_from_another_process(loader.path, "duckdb")  # released after 5 s
        assert plain.returncode == 0, plain.stderr
        assert int(plain.stdout) == 15
    finally:
        loader.stop()


def test_without_holding_the_file_is_released_after_every_batch(tmp_path: Path) -> None:
    log = MemoryEventLog(partitions=1)
    loader = _holding(tmp_path, log, hold_file_max_ms=0)  # the old behaviour: no watcher
    try:
        assert loader._watch is None
        for prefix in "ab":  # two busy batches: neither leaves the file open
            log.append(_events(20, prefix))
            assert loader.run_once().events_loaded == 20
            assert loader._con is None
        plain = _read_from_another_process(loader.path, "duckdb")  # asks for nothing
        assert plain.returncode == 0, plain.stderr
        assert int(plain.stdout) == 40
    finally:
        loader.stop()
    assert loader.last_error is None


@pytest.mark.parametrize("asked_ago_s", [0.0, RELEASE_ASKED_S + 60])
def test_a_loader_asked_lately_releases_the_file_after_its_batch(
    tmp_path: Path, asked_ago_s: float
) -> None:
    log = MemoryEventLog(partitions=1)
    loader = _holding(tmp_path, log)
    try:
        ask_release(loader.path)
        then = time.time() - asked_ago_s
        os.utime(release_marker(loader.path), (then, then))
        log.append(_events(5, "a"))
        assert loader.run_once().events_loaded == 5
        held = loader._con is not None
        assert held == (asked_ago_s > RELEASE_ASKED_S)  # a stale request is no request
    finally:
        loader.stop()
    assert loader._con is None
