"""Freshness per segment, measured: from an event's acknowledgement (``received_at_ms``) to
the commit of the membership change it caused, and, apart, for time-driven changes from the
timer's due time to that commit (timer lateness).

Changes caused by **backfilled** events — events that happened more than :data:`LATE_MS`
before they arrived (an import, a replay, a device's offline queue) — are measured apart
(``backfill``): an import of a year of history queues millions of events at once, and their
latency would otherwise pass for the live figure (or, mixed in, hide it).

The processor observes every committed change; each segment keeps its last ``window``
latencies of each kind in memory, summarised as count, p50, p99 and max
(``/api/v1/segments/{name}``, ``/api/v1/status``), and feeds the Prometheus histogram
``segflow_membership_freshness_seconds{segment, kind}`` (``/metrics``).

>>> f = Freshness(window=100)
>>> f.observe([(["buyers"], 1_000), (["buyers"], 1_010)], committed_ms=1_020)
>>> f.observe([(["buyers"], 1_000)], committed_ms=1_150, kind="timer")
>>> f.observe([(["buyers"], 1_000)], committed_ms=61_000, kind="backfill")
>>> f.summary()["buyers"]["timers"]
{'count': 1, 'p50_ms': 150.0, 'p99_ms': 150.0, 'max_ms': 150}
>>> s = f.summary()["buyers"]; s["count"], s["p50_ms"], s["backfill"]["p50_ms"]
(2, 15.0, 60000.0)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from segflow.telemetry.metrics import FRESHNESS

Kind = Literal["event", "timer", "backfill"]
LATE_MS = 3_600_000
"""An event that arrives more than this after it happened is backfilled, not live."""
_SUMMARY_KEY = {"timer": "timers", "backfill": "backfill"}


class Freshness:
    """Per-segment latency windows, event-caused and time-driven apart (thread-safe)."""

    def __init__(self, window: int = 2048) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._latencies: dict[tuple[str, Kind], deque[int]] = {}

    def observe(
        self, causes: Iterable[tuple[Iterable[str], int]], committed_ms: int, kind: Kind = "event"
    ) -> None:
        """Record ``committed_ms - cause_ms`` for each segment of each ``(segments, cause_ms)``
        (a batch's changes, one evaluation's together: grouped by segment, then counted per
        segment with numpy)."""
        by_segment: dict[str, list[int]] = {}
        for segments, cause_ms in causes:
            for segment in segments:
                found = by_segment.get(segment)
                if found is None:
                    found = by_segment[segment] = []
                found.append(cause_ms)
        for segment, caused in by_segment.items():
            latencies = np.maximum(0, committed_ms - np.asarray(caused, dtype=np.int64))
            with self._lock:
                window = self._latencies.get((segment, kind))
                if window is None:
                    window = self._latencies[(segment, kind)] = deque(maxlen=self.window)
                window.extend(latencies[-self.window :].tolist())
            FRESHNESS.add((segment, kind), latencies / 1000)

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{segment: {count, p50_ms, p99_ms, max_ms, timers?: {...}, backfill?: {...}}}``:
        the top level for changes caused by live events, ``timers`` for time-driven ones and
        ``backfill`` for those caused by backfilled events (each when there are any)."""
        with self._lock:
            snapshot = {key: list(d) for key, d in self._latencies.items()}
        out: dict[str, dict[str, Any]] = {}
        for (segment, kind), values in sorted(snapshot.items()):
            entry = out.setdefault(segment, {"count": 0, "p50_ms": None, "p99_ms": None,
                                             "max_ms": None})  # fmt: skip
            if kind == "event":
                entry.update(_stats(values))
            else:
                entry[_SUMMARY_KEY[kind]] = _stats(values)
        return out


def _stats(values: list[int]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    return {
        "count": len(values),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p99_ms": round(float(np.percentile(arr, 99)), 1),
        "max_ms": int(arr.max()),
    }
