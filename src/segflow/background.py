"""A service's background thread: :class:`BackgroundLoop` (one tick every interval).

The serve process's background parts (``segflow.server.services``: the processor, the
warehouse loader, the definition watcher, the ML schedule, deletion regulations, the
suppression refresh, the pipeline's snapshot and command queue, the metrics publisher) are each
a loop of the same shape — a daemon thread that does a round of work,
then waits an interval or until woken, until stopped — written once here.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["BackgroundLoop"]


class BackgroundLoop:
    """A service that calls :meth:`tick` on its own daemon thread every ``interval_s`` until
    :meth:`stop` (which waits up to ``join_s`` for the tick in progress); :meth:`wake` runs the
    next tick at once. A tick that returns ``True`` (more work is waiting) is followed by
    the next one at once; one that raises is logged and tried again after the interval.
    ``wait_first``: the first tick comes after one interval (the work was done at start, or
    is not due yet). Subclasses call ``super().__init__()`` and implement ``tick``.

    >>> class Counter(BackgroundLoop):
    ...     name, interval_s = "counter", 0.01
    ...     def __init__(self):
    ...         super().__init__(); self.ticks = threading.Event()
    ...     def tick(self):
    ...         self.ticks.set()
    >>> loop = Counter(); loop.start(); loop.ticks.wait(5)
    True
    >>> loop.stop()
    """

    name = "loop"
    interval_s = 1.0
    join_s = 30.0
    wait_first = False

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> Any:
        """One round of the service's work (``True``: more is waiting, tick again now)."""
        raise NotImplementedError

    def wake(self) -> None:
        """Tick now instead of at the end of the interval."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:  # already running
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name=f"segflow-{self.name}", daemon=True)
        self._thread.start()

    def idle_wait_s(self) -> float:
        """How long to wait after an idle tick unless :meth:`wake` comes first:
        ``interval_s``, or less when the service knows its next work is due sooner."""
        return self.interval_s

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.join_s)
            self._thread = None

    def _main(self) -> None:
        if self.wait_first:
            self._wake.wait(self.interval_s)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = self.tick() is True
            except Exception:  # logged under the service's own module
                logging.getLogger(type(self).__module__).exception(
                    "%s failed; will retry", self.name
                )
                busy = False
            if not busy and not self._stop.is_set():
                self._wake.wait(self.idle_wait_s())
