"""The processor's and the loader's live figures, seen from any process of a data directory.

The figures ``/api/v1/status`` and ``GET /api/v1/segments/NAME`` show (the loader's
``changes_lag`` and ``last_error``, the processor's backfill and freshness) live in memory of
the process that runs those parts. Under ``segflow serve``'s supervisor that is the
``pipeline`` child, while the API runs in the HTTP workers. So the process that runs them
publishes a :class:`PipelineFigures` snapshot (``DATA_DIR/run/pipeline.json``, msgspec JSON,
written atomically: a temp file and a rename) every ``interval_s`` seconds; an API without the
``process`` role reads it (:class:`SnapshotFigures`), one with it asks its own parts
(:class:`LocalFigures`). Both are a :class:`FigureSource`; a snapshot whose writer is gone
is not shown.

>>> import tempfile
>>> data = tempfile.mkdtemp()
>>> figures = PipelineFigures(pid=os.getpid(), written_at_ms=1, changes_lag=3)
>>> write_snapshot(data, figures)
>>> SnapshotFigures(data).figures().changes_lag
3
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import msgspec

from segflow.background import BackgroundLoop
from segflow.serving.status import alive
from segflow.stream.backfill import Progress
from segflow.stream.processor import Processor
from segflow.warehouse.loader import WarehouseLoader

log = logging.getLogger(__name__)

SNAPSHOT_FILE = Path("run") / "pipeline.json"


class PipelineFigures(msgspec.Struct, kw_only=True):
    """What the API shows of the processor and the loader; ``age_ms`` is set by the reader."""

    pid: int
    written_at_ms: int
    changes_lag: int | None = None
    loader_last_error: str | None = None
    backfilling: bool = False
    backfill: Progress = Progress(running=False)
    freshness: dict[str, dict[str, Any]] = {}
    age_ms: int | None = None


class FigureSource(Protocol):
    """Where the API reads the pipeline's figures (``None``: not known right now)."""

    def figures(self) -> PipelineFigures | None: ...


class LocalFigures:
    """The figures of this process's own processor and loader (single-process mode)."""

    def __init__(self, processor: Processor, loader: WarehouseLoader) -> None:
        self.processor = processor
        self.loader = loader

    def figures(self, *, freshness: bool = True) -> PipelineFigures:
        """The figures now; without ``freshness`` (``{}``) they cost next to nothing."""
        error = self.loader.last_error
        return PipelineFigures(
            pid=os.getpid(),
            written_at_ms=int(time.time() * 1000),
            changes_lag=self.loader.changes_lag(),
            loader_last_error=repr(error) if error else None,
            backfilling=self.processor.backfill_pending,
            backfill=self.processor.progress,
            freshness=self.processor.freshness.summary() if freshness else {},
        )


class SnapshotFigures:
    """The figures another process of the data directory published (``None`` without a
    snapshot, or when its writer no longer runs)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / SNAPSHOT_FILE

    def figures(self) -> PipelineFigures | None:
        try:
            found = msgspec.json.decode(self.path.read_bytes(), type=PipelineFigures)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        if not alive(found.pid):
            return None
        found.age_ms = max(0, int(time.time() * 1000) - found.written_at_ms)
        return found


def write_snapshot(data_dir: str | Path, figures: PipelineFigures) -> None:
    """Replace ``DATA_DIR/run/pipeline.json`` atomically (readers see the old or the new)."""
    path = Path(data_dir) / SNAPSHOT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_bytes(msgspec.json.encode(figures))
    os.replace(temp, path)


class SnapshotWriter(BackgroundLoop):
    """A service that publishes ``source``'s figures when they change (looked at every
    ``check_s``) and at least every ``interval_s``, so readers can tell its age; the file is
    removed when it stops. The freshness percentiles (the costly part: numpy over every
    segment's window, in the processor's process) are recomputed every ``interval_s`` only."""

    name = "pipeline-snapshot"

    def __init__(
        self,
        data_dir: str | Path,
        source: LocalFigures,
        *,
        interval_s: float = 1.0,
        check_s: float = 0.1,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.source = source
        self.every_s = interval_s  # written at least this often
        self.interval_s = self.check_s = check_s  # the loop's: looked at this often
        self._last: tuple[Any, ...] | None = None
        self._written = self._measured = float("-inf")
        self._freshness: dict[str, dict[str, Any]] = {}

    def publish(self, *, force: bool = True) -> bool:
        """Write the figures (unless ``force`` is false and none changed within
        ``interval_s``); returns whether it wrote."""
        now = time.monotonic()
        figures = self.source.figures(freshness=False)
        key = msgspec.structs.astuple(figures)[2:-2]  # what changed, but pid, time, freshness
        if force or now - self._measured >= self.every_s:
            self._freshness, self._measured = self.source.processor.freshness.summary(), now
        elif key == self._last and now - self._written < self.every_s:
            return False
        figures.freshness = self._freshness
        write_snapshot(self.data_dir, figures)
        self._last, self._written = key, now
        return True

    join_s = 10.0

    def tick(self) -> None:
        self.publish(force=False)

    def stop(self) -> None:
        super().stop()
        (self.data_dir / SNAPSHOT_FILE).unlink(missing_ok=True)
