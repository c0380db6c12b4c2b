"""The segment list's charts are drawn once a minute at most, and a changed definition shows
at once (segflow.ui.charts), over a real log, processor and DuckDB warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.pipeline import Pipeline, event

from segflow.clock import DAY_MS
from segflow.segments.sizes import days_back
from segflow.ui.charts import IDLE_MS, TTL_MS, ChartCache

NOW = 1_796_515_984_000


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[Pipeline]:
    with Pipeline(tmp_path, NOW) as found:
        yield found


def viewed(n: int, days_ago: int) -> list:  # type: ignore[type-arg]
    return [event("track", NOW - days_ago * DAY_MS, f"v{n}", user_id=f"u{n}",
                  event="Product Viewed")]  # fmt: skip


class Counted:
    """The pipeline's segment service, counting the charts it draws."""

    def __init__(self, pipe: Pipeline) -> None:
        self.service, self.drawn = pipe.service, 0
        self.sizes_of = pipe.service.sizes

        def sizes(names: list[str], at_ms: list[int]) -> dict[str, list[int]]:
            self.drawn += len(names)
            return self.sizes_of(names, at_ms)

        pipe.service.sizes = sizes  # type: ignore[method-assign]


def test_a_chart_is_drawn_once_a_minute_and_a_new_definition_shows_at_once(
    pipe: Pipeline,
) -> None:
    pipe.segment("viewers", 'did "Product Viewed"')
    pipe.send(viewed(1, 10))
    clock = [NOW]
    cache, counted = ChartCache(now_ms=lambda: clock[0]), Counted(pipe)

    def chart() -> list[int]:
        return cache.sizes(pipe.service, ["viewers"], lambda now: days_back(now, 30))["viewers"]

    first = chart()
    assert first == [0] * 20 + [1] * 11 and counted.drawn == 1
    pipe.send(viewed(2, 5))  # the warehouse loads more: within the minute, the kept chart
    assert chart() == first and counted.drawn == 1
    clock[0] += TTL_MS  # a minute later the new events show
    assert chart() == [0] * 20 + [1] * 5 + [2] * 6 and counted.drawn == 2

    before = chart()
    pipe.segment("viewers", 'did "Product Viewed" in last 7 days')  # shows at once
    after = chart()
    assert after != before and counted.drawn == 3
    assert after == pipe.service.sizes_per_instant(["viewers"], days_back(clock[0], 30))["viewers"]


def test_an_idle_warehouse_keeps_the_chart_for_an_hour_and_a_referred_segment_counts(
    pipe: Pipeline,
) -> None:
    pipe.segment("viewers", 'did "Product Viewed"')
    pipe.segment("quiet_viewers", 'in segment "viewers" and not did any event in last 3 days')
    pipe.send(viewed(1, 10))
    clock = [NOW]
    cache, counted = ChartCache(now_ms=lambda: clock[0]), Counted(pipe)

    def chart() -> list[int]:
        found = cache.sizes(pipe.service, ["quiet_viewers"], lambda now: days_back(now, 30))
        return found["quiet_viewers"]

    assert chart() == [0] * 23 + [1] * 8 and counted.drawn == 1
    clock[0] += TTL_MS  # nothing loaded since: kept
    assert chart() == [0] * 23 + [1] * 8 and counted.drawn == 1
    clock[0] += IDLE_MS
    chart()
    assert counted.drawn == 2
    pipe.segment("viewers", 'did "Order Completed"')  # the segment it refers to changed
    assert chart() == [0] * 31 and counted.drawn == 3
    pipe.service.delete("segment", "quiet_viewers")
    cache.sizes(pipe.service, ["viewers"], lambda now: days_back(now, 30))
    assert "quiet_viewers" not in cache._charts  # a deleted segment's chart is dropped
