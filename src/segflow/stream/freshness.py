"""Freshness per segment, measured: from an event's acknowledgement (``received_at_ms``) to
the commit of the membership change it caused, and for time-driven changes from the timer's
due time to that commit (timer lateness).

The processor observes every committed change; each segment keeps its last ``window``
latencies in memory, summarised as count, p50, p99 and max (``/api/v1/segments/{name}``,
``/api/v1/status``).

>>> f = Freshness(window=100)
>>> f.observe([("buyers", 1_000), ("buyers", 1_010)], committed_ms=1_020)
>>> f.summary()["buyers"]
{'count': 2, 'p50_ms': 15.0, 'p99_ms': 19.9, 'max_ms': 20}
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np


class Freshness:
    """Per-segment latency windows (thread-safe)."""

    def __init__(self, window: int = 2048) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._latencies: dict[str, deque[int]] = {}

    def observe(self, causes: Iterable[tuple[str, int]], committed_ms: int) -> None:
        """Record ``committed_ms - cause_ms`` for each ``(segment, cause_ms)``."""
        with self._lock:
            for segment, cause_ms in causes:
                found = self._latencies.get(segment)
                if found is None:
                    found = self._latencies[segment] = deque(maxlen=self.window)
                found.append(max(0, committed_ms - cause_ms))

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{segment: {count, p50_ms, p99_ms, max_ms}}`` over each segment's window."""
        with self._lock:
            snapshot = {s: list(d) for s, d in self._latencies.items()}
        out = {}
        for segment, values in sorted(snapshot.items()):
            arr = np.asarray(values, dtype=float)
            out[segment] = {
                "count": len(values),
                "p50_ms": round(float(np.percentile(arr, 50)), 1),
                "p99_ms": round(float(np.percentile(arr, 99)), 1),
                "max_ms": int(arr.max()),
            }
        return out
