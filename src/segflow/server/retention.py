"""Log retention as a serve-process service: every ``interval_s``, delete the records every
consumer group has passed and that are older than ``retention_ms``. Nothing is deleted until
each of ``required_groups`` (the processor and the warehouse loader) has committed: a consumer
that has not started yet must not lose what it has not read. Whether the rules can live with
the retention is checked at start-up (``segflow.privacy.retention``; docs/privacy.md).

>>> import os, tempfile
>>> from segflow.log.sqlite import SqliteEventLog
>>> log = SqliteEventLog(os.path.join(tempfile.mkdtemp(), "log.sqlite"))
>>> service = LogRetention(log, retention_ms=0, interval_s=3600)
>>> service.run_once()
0
>>> log.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from segflow.errors import TransientError
from segflow.log.base import ServedLog

logger = logging.getLogger("segflow.server.retention")


class LogRetention:
    """A :class:`~segflow.server.services.Service` applying the log's retention periodically."""

    name = "log-retention"

    def __init__(
        self,
        log: ServedLog,
        *,
        retention_ms: int,
        interval_s: float,
        required_groups: Sequence[str] = (),
    ) -> None:
        self._log = log
        self._required = tuple(required_groups)
        self._retention_ms = retention_ms
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Apply retention now; returns how many records were deleted."""
        try:
            return self._log.apply_retention(
                older_than_ms=self._retention_ms, required_groups=self._required
            )
        except TransientError:
            logger.warning("log retention failed; will retry", exc_info=True)
            return 0

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.run_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
