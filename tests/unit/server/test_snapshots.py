"""The pipeline's figures published as a snapshot file and read from another process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from segflow.server.snapshots import SNAPSHOT_FILE, PipelineFigures, SnapshotFigures, write_snapshot
from segflow.stream.backfill import Progress


def test_a_snapshot_is_read_back_with_its_age(tmp_path: Path) -> None:
    figures = PipelineFigures(
        pid=os.getpid(),
        written_at_ms=1,
        changes_lag=0,
        backfilling=True,
        backfill=Progress(running=True, done=0.5, segments=("buyers",)),
        freshness={"buyers": {"count": 2, "p50_ms": 5}},
    )
    write_snapshot(tmp_path, figures)
    found = SnapshotFigures(tmp_path).figures()
    assert found is not None and found.backfill.segments == ("buyers",)
    assert found.freshness["buyers"]["count"] == 2 and found.age_ms is not None
    assert not list((tmp_path / SNAPSHOT_FILE).parent.glob("*.tmp"))


def test_a_snapshot_of_a_dead_writer_or_none_at_all_is_not_shown(tmp_path: Path) -> None:
    assert SnapshotFigures(tmp_path).figures() is None
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    write_snapshot(tmp_path, PipelineFigures(pid=int(done.stdout), written_at_ms=1))
    assert SnapshotFigures(tmp_path).figures() is None
