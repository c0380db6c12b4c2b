"""The serve process's regulation runner: a background service that runs regulations.

Regulations are queued in the catalog by the API and the CLI (another process, which
cannot reach this process's processor and loader). The runner polls them every
``privacy.poll_interval_s`` (and at once when the API wakes it), runs each open one with
:class:`~segflow.privacy.job.RegulationJob`, then compacts the stores once for every
regulation that finished erasing and marks them finished. It also keeps the in-memory
suppression list in step with the stored one (the CLI may add or remove suppressions).

At start it holds again the identifiers of regulations that were running when the process
stopped, and resumes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from segflow.background import BackgroundLoop
from segflow.privacy.job import RegulationJob
from segflow.privacy.store import PrivacyStore
from segflow.privacy.suppression import SuppressionList

log = logging.getLogger(__name__)
COMPACT_RETRY_S = 60.0


class RegulationRunner(BackgroundLoop):
    """A :class:`~segflow.server.services.BackgroundLoop` (``start``/``stop``), or
    :meth:`run_once`."""

    name = "privacy"

    def __init__(
        self,
        job: RegulationJob,
        store: PrivacyStore,
        suppressions: SuppressionList,
        *,
        compact: Callable[[], Any],
        interval_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.job = job
        self.store = store
        self.suppressions = suppressions
        self.compact = compact
        self.interval_s = interval_s
        self._compact_after = 0.0

    def refresh(self) -> None:
        """Reload the stored suppressions when they changed."""
        reload(self.store, self.suppressions)

    def run_once(self) -> int:
        """Run every open regulation, then compact once for those that erased; returns how
        many regulations were worked on."""
        self.refresh()
        regs = self.store.open_regulations()
        for reg in regs:
            if self._stop.is_set():
                break
            self.job.run(reg)
        self._compact_waiting()
        return len(regs)

    def _compact_waiting(self) -> None:
        waiting = [r for r in self.store.open_regulations() if r.step == "compact"]
        if not waiting or time.monotonic() < self._compact_after:
            return
        try:
            spent = self.compact()
        except Exception as exc:  # the data is erased; only the free bytes wait
            log.exception("compaction after regulations failed; retrying later")
            self._compact_after = time.monotonic() + COMPACT_RETRY_S
            for reg in waiting:
                reg.error = f"compact: {exc} (retried)"
                self.store.save(reg, None)
            return
        now_ms = self.job.clock.now_ms()
        for reg in waiting:
            reg.error = None
            reg.result["compaction"] = spent
            self.job.finish(reg, compacted_ms=now_ms)

    def start(self) -> None:
        self.refresh()
        self.job.resume_holds(r for r in self.store.open_regulations() if r.status == "running")
        super().start()

    def tick(self) -> None:
        """Run the open regulations (:meth:`wake`: a new one was queued in this process)."""
        self.run_once()


class SuppressionRefresh(BackgroundLoop):
    """A service keeping a process's suppression list in step with the stored one, in a
    process that collects but does not run regulations (``segflow serve``'s HTTP workers):
    a suppression stored by another process reaches its collector within ``interval_s``.
    Deletion holds are the runner's own, in memory, and do not reach it."""

    name = "suppressions"

    def __init__(
        self, store: PrivacyStore, suppressions: SuppressionList, *, interval_s: float = 1.0
    ) -> None:
        super().__init__()
        self.store = store
        self.suppressions = suppressions
        self.interval_s = interval_s

    def refresh(self) -> None:
        """Reload the stored suppressions when they changed."""
        reload(self.store, self.suppressions)

    tick = refresh


def reload(store: PrivacyStore, suppressions: SuppressionList) -> None:
    """Replace ``suppressions`` with the stored ones when their version changed."""
    version = store.suppressions_version()
    if version != suppressions.version:
        suppressions.replace(store.suppressed_hashes(), version)
