"""The pipeline's figures published as a snapshot file and read from another process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from segflow.serving.snapshots import (
    SNAPSHOT_FILE,
    PipelineFigures,
    SnapshotFigures,
    SnapshotWriter,
    write_snapshot,
)
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


class _Freshness:
    def __init__(self) -> None:
        self.summaries = 0

    def summary(self) -> dict[str, dict[str, int]]:
        self.summaries += 1
        return {"buyers": {"count": self.summaries}}


class _Source:
    """A LocalFigures stand-in: the loader's lag is set by the test."""

    def __init__(self) -> None:
        self.lag = 0
        self.processor = SimpleNamespace(freshness=_Freshness())

    def figures(self, *, freshness: bool = True) -> PipelineFigures:
        return PipelineFigures(pid=os.getpid(), written_at_ms=1, changes_lag=self.lag)


def test_the_writer_writes_on_change_and_measures_freshness_once_an_interval(
    tmp_path: Path,
) -> None:
    source = _Source()
    writer = SnapshotWriter(tmp_path, source, interval_s=3600)  # type: ignore[arg-type]
    assert writer.publish(force=False) is True  # the first time
    assert writer.publish(force=False) is False  # nothing changed
    source.lag = 5
    assert writer.publish(force=False) is True
    found = SnapshotFigures(tmp_path).figures()
    assert found is not None and found.changes_lag == 5
    assert found.freshness == {"buyers": {"count": 1}}  # measured once, reused
    assert source.processor.freshness.summaries == 1
