"""The segment list's size charts, computed once a minute at most.

The list draws one 30-day chart per segment (``SegmentService.sizes``: one query per segment
on the compiler's time grid). A chart is kept for :data:`TTL_MS` and served again while the
definitions are the ones it was drawn from, so a page that is reloaded, or opened by many
people, does not rerun the warehouse queries. A changed definition (the segment's, or one it
refers to with ``in segment`` or ``computed``) shows at once. Past the minute, a chart is
drawn again only when the warehouse loaded something since (its cursors moved) or when an
hour went by (time alone moves valid-time sizes: windows slide, people go quiet).

>>> cache = ChartCache(now_ms=lambda: 0)
>>> cache.fresh("s", ((("segment", "s", 1),), (("log:0", 5),)))
False
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from segflow.segments.service import SegmentService
from segflow.segments.store import Definition

TTL_MS = 60_000  # a chart is drawn once a minute at most
IDLE_MS = 3_600_000  # with nothing loaded, it is still redrawn hourly (valid time moves)

Key = tuple[tuple[tuple[str, str, int], ...], tuple[tuple[str, int], ...]]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _Chart:
    definitions: tuple[tuple[str, str, int], ...]
    position: tuple[tuple[str, int], ...]
    drawn_ms: int
    sizes: list[int]


class ChartCache:
    """Each segment's chart with what it was drawn from: the definitions' versions and the
    warehouse's loaded position (its cursors)."""

    def __init__(self, now_ms: Callable[[], int] = _wall_ms) -> None:
        self.now_ms = now_ms
        self._charts: dict[str, _Chart] = {}
        self._lock = threading.Lock()

    def fresh(self, name: str, key: Key) -> bool:
        """Whether ``name``'s kept chart may be served for ``key`` (definitions, position)."""
        chart = self._charts.get(name)
        if chart is None or chart.definitions != key[0]:
            return False
        age = self.now_ms() - chart.drawn_ms
        return age < TTL_MS or (chart.position == key[1] and age < IDLE_MS)

    def sizes(
        self, service: SegmentService, names: Sequence[str], at: Callable[[int], list[int]]
    ) -> dict[str, list[int]]:
        """Each of ``names``' sizes at the instants ``at(now)``, drawn again only when its
        kept chart is not :meth:`fresh`."""
        segments = service.definitions("segment")
        key = (_versions(segments + service.definitions("trait")),
               service.loaded_position())  # fmt: skip
        with self._lock:
            current = {d.name for d in segments}
            for gone in self._charts.keys() - current:  # deleted segments' charts
                del self._charts[gone]
            stale = [n for n in names if not self.fresh(n, key)]
        if stale:
            now = self.now_ms()
            drawn = service.sizes(stale, at(now))
            with self._lock:
                for name, sizes in drawn.items():
                    self._charts[name] = _Chart(key[0], key[1], now, sizes)
        with self._lock:
            return {n: self._charts[n].sizes for n in names if n in self._charts}


def _versions(definitions: list[Definition]) -> tuple[tuple[str, str, int], ...]:
    return tuple(sorted((d.kind, d.name, d.version) for d in definitions))
