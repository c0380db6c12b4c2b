"""Scheduled ML jobs as a serve-process service.

Every ``check_interval_s`` it opens the warehouse, asks :class:`~segflow.ml.scheduler.MlScheduler`
which models are due (nightly by default, from ``ml.run_at_hour_utc``), runs them one at a time
and closes the file again, so ``segflow sql`` and other readers are only kept waiting while a
job runs. Scores and cluster labels go to the warehouse and to ``sink`` (the processor), where
segment rules read them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import duckdb

from segflow.background import BackgroundLoop
from segflow.clock import Clock
from segflow.config import MlSettings
from segflow.ml.jobs import AttributeSink, JobContext
from segflow.ml.registry import Registry, RunRecord
from segflow.ml.scheduler import MlScheduler

log = logging.getLogger(__name__)


class MlService(BackgroundLoop):
    """Runs due model jobs in a background thread (``start`` / ``stop``), looking every
    ``ml.check_interval_s`` (the first look after one interval)."""

    name = "ml-scheduler"

    def __init__(
        self,
        warehouse: Callable[[], duckdb.DuckDBPyConnection],
        clock: Clock,
        *,
        sink: AttributeSink | None = None,
        settings: MlSettings | None = None,
    ) -> None:
        super().__init__()
        self.warehouse = warehouse
        self.clock = clock
        self.sink = sink
        self.settings = settings or MlSettings()
        self.interval_s = self.settings.check_interval_s

    def tick(self) -> list[RunRecord]:
        """Run every due job now."""
        con = self.warehouse()
        try:
            ctx = JobContext(
                con=con, clock=self.clock, sink=self.sink, threads=self.settings.threads or None
            )
            scheduler = MlScheduler(
                ctx, run_at_hour_utc=self.settings.run_at_hour_utc, enabled=True
            )
            return scheduler.tick()
        finally:
            con.close()

    def load_live_models(self) -> int:
        """Hand every model's stored live-scoring export to the sink (the processor scores
        them on the fly: ``segflow.stream.live``); returns how many. Called on start."""
        put = getattr(self.sink, "put_live_model", None)
        if put is None:
            return 0
        con = self.warehouse()
        try:
            exports = Registry(con).live_models()
        finally:
            con.close()
        for export in exports:
            put(export)
        return len(exports)

    wait_first = True

    def start(self) -> None:
        try:
            self.load_live_models()
        except Exception:  # a warehouse that cannot be read now: the next run pushes them
            log.warning("could not load the live models from the warehouse", exc_info=True)
        if self.settings.schedule_enabled:
            super().start()
