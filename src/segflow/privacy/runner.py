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
import threading
import time
from collections.abc import Callable
from typing import Any

from segflow.privacy.job import RegulationJob
from segflow.privacy.store import PrivacyStore
from segflow.privacy.suppression import SuppressionList

log = logging.getLogger(__name__)
COMPACT_RETRY_S = 60.0


class RegulationRunner:
    """A :class:`~segflow.server.services.Service` (``start``/``stop``), or :meth:`run_once`."""

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
        self.job = job
        self.store = store
        self.suppressions = suppressions
        self.compact = compact
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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

    def wake(self) -> None:
        """Look at the regulations now (a new one was queued in this process)."""
        self._wake.set()

    def start(self) -> None:
        self.refresh()
        self.job.resume_holds(r for r in self.store.open_regulations() if r.status == "running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="segflow-privacy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except Exception:
                log.exception("running regulations failed; will retry")
            self._wake.wait(self.interval_s)


class SuppressionRefresh:
    """A service keeping a process's suppression list in step with the stored one, in a
    process that collects but does not run regulations (``segflow serve``'s HTTP workers):
    a suppression stored by another process reaches its collector within ``interval_s``.
    Deletion holds are the runner's own, in memory, and do not reach it."""

    name = "suppressions"

    def __init__(
        self, store: PrivacyStore, suppressions: SuppressionList, *, interval_s: float = 1.0
    ) -> None:
        self.store = store
        self.suppressions = suppressions
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Reload the stored suppressions when they changed."""
        reload(self.store, self.suppressions)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:
                log.exception("reloading the suppressions failed; will retry")


def reload(store: PrivacyStore, suppressions: SuppressionList) -> None:
    """Replace ``suppressions`` with the stored ones when their version changed."""
    version = store.suppressions_version()
    if version != suppressions.version:
        suppressions.replace(store.suppressed_hashes(), version)
