"""Clocks: all time-dependent logic takes a :class:`Clock` so tests and replays are deterministic.

Time is an ``int`` of epoch milliseconds, named ``*_ms``.

>>> clock = ManualClock(1_000)
>>> clock.now_ms()
1000
>>> clock.advance(500)
>>> clock.now_ms()
1500
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class WallClock:
    """Wall time (production)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to (tests, replays, the demo's accelerated history)."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, delta_ms: int) -> None:
        if delta_ms < 0:
            raise ValueError("a clock never goes backwards")
        self._now_ms += delta_ms

    def set(self, now_ms: int) -> None:
        if now_ms < self._now_ms:
            raise ValueError("a clock never goes backwards")
        self._now_ms = now_ms


MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
