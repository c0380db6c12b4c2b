"""Scheduled ML jobs inside ``segflow serve``: each model runs when its last successful run is
older than its schedule (``hourly``, ``daily``/``nightly`` (default), ``weekly``), no earlier
than ``run_at_hour_utc`` on its day for daily schedules.

>>> import duckdb
>>> from segflow.clock import ManualClock, DAY_MS
>>> from segflow.ml.jobs import JobContext
>>> ctx = JobContext(con=duckdb.connect(), clock=ManualClock(3 * DAY_MS + 3 * 3_600_000))
>>> sorted(MlScheduler(ctx, run_at_hour_utc=2).due())[:2]
['bundle_72h', 'churn']
"""

from __future__ import annotations

import asyncio
import logging

from segflow.clock import DAY_MS, HOUR_MS
from segflow.ml.exceptions import FitError, MLInputError
from segflow.ml.jobs import SCHEDULE_MS, JobContext, run_job
from segflow.ml.registry import RunRecord

log = logging.getLogger(__name__)


class MlScheduler:
    """Decides which models are due and runs them (one at a time: they share 2 cores with the rest)."""

    def __init__(self, ctx: JobContext, *, run_at_hour_utc: int = 2, enabled: bool = True) -> None:
        self.ctx = ctx
        self.run_at_hour_utc = run_at_hour_utc
        self.enabled = enabled

    def due(self) -> list[str]:
        if not self.enabled:
            return []
        now = self.ctx.clock.now_ms()
        out = []
        for spec in self.ctx.registry.list_models():
            period = SCHEDULE_MS.get(spec.schedule)
            if period is None:
                continue
            if period >= DAY_MS and (now % DAY_MS) < self.run_at_hour_utc * HOUR_MS:
                continue
            recent = self.ctx.registry.runs(spec.name, 1)
            if recent and recent[0].status == "failed" and now - recent[0].started_at_ms < HOUR_MS:
                continue  # a failed run is retried an hour later, not at every check
            last = self.ctx.registry.last_run(spec.name)
            if last is None or now - last.started_at_ms >= period - HOUR_MS:
                out.append(spec.name)
        return out

    def tick(self) -> list[RunRecord]:
        """Run every due job; a failing job is recorded (by ``run_job``) and does not stop the others."""
        runs = []
        defined = self.ctx.registry.defined_models()
        for name in self.due():
            try:
                runs.append(run_job(self.ctx, name))
            except (FitError, MLInputError) as exc:  # not enough data yet: a line, not a trace
                # a built-in model nobody defined says nothing (its card shows the failed run)
                level = logging.WARNING if name in defined else logging.DEBUG
                log.log(level, "ml job %s skipped: %s (retried in an hour)", name, exc)
            except Exception:
                log.exception("ml job %s failed", name)
        return runs

    async def serve(self, stop: asyncio.Event, interval_s: float = 60.0) -> None:
        """Check for due jobs every ``interval_s`` until ``stop`` is set (jobs run in a thread)."""
        while not stop.is_set():
            await asyncio.to_thread(self.tick)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                continue
