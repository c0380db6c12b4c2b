"""Overview: the event rate, events by source and name, each part's lag, recent events.

The rate per minute over the last :data:`MINUTES` is counted in the warehouse (every loaded
event, whatever the rate: the log's tail held the last few hundred records of each partition,
a few seconds at a busy moment), split into live events and backfilled ones — events that
happened more than :data:`~segflow.stream.freshness.LATE_MS` before they arrived (an import,
a replay) — and flagged when the backfill dominates. Events the loader has not loaded yet are
counted apart (its lag). The recent events come from the log's tail (live, not waiting for the
loader); events by source and name from the warehouse. The live panel is re-fetched every few
seconds by the page's script (``/console/overview/live``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.errors import SegflowError
from segflow.log.base import Record
from segflow.serving.status import status
from segflow.stream.freshness import LATE_MS
from segflow.ui.svg import bars, columns
from segflow.ui.web import Console, Form, now_ms

MINUTES = 30
RECENT = 20
_RATE_SQL = (
    "SELECT CAST(floor((? - received_at_ms) / 60000.0) AS BIGINT) AS age,"
    " count(*) FILTER (WHERE received_at_ms - timestamp_ms <= ?) AS live, count(*) AS n"
    " FROM events WHERE received_at_ms > ? AND received_at_ms <= ? GROUP BY 1"
)


def _tail(console: Console) -> list[Record]:
    """The :data:`RECENT` most recently received records (the last few of each partition)."""
    log = console.deps.runtime.log
    records: list[Record] = []
    for partition, end in log.end_offsets().items():
        records += log.read(partition, max(0, end - RECENT), RECENT)
    return sorted(records, key=lambda r: r.event.received_at_ms, reverse=True)[:RECENT]


@dataclass(frozen=True)
class Rate:
    """Events received per minute over the last :data:`MINUTES` (oldest first), live and
    backfilled apart."""

    live: list[int]
    backfill: list[int]

    @property
    def dominated(self) -> bool:
        """Whether backfilled events outnumber live ones over the chart."""
        return sum(self.backfill) > sum(self.live)


def rate(console: Console, now: int) -> Rate:
    """Count the warehouse's events per minute of arrival (see the module's docstring).

    >>> r = Rate(live=[1, 2], backfill=[0, 9]); r.dominated
    True
    """
    live, backfill = [0] * MINUTES, [0] * MINUTES
    params = [now, LATE_MS, now - MINUTES * 60_000, now]
    try:
        con = console.deps.warehouse()
        try:
            rows = con.execute(_RATE_SQL, params).fetchall()
        finally:
            con.close()
    except (duckdb.Error, SegflowError):
        rows = []  # no warehouse yet (or it is busy): an empty chart, the lag says the rest
    for age, n_live, n in rows:
        if 0 <= age < MINUTES:
            live[MINUTES - 1 - age] = int(n_live)
            backfill[MINUTES - 1 - age] = int(n) - int(n_live)
    return Rate(live, backfill)


def live(console: Console) -> dict[str, Any]:
    now, records = now_ms(), _tail(console)
    health = status(console.deps.runtime.log, console.deps.activation.store)
    counted = rate(console, now)
    return {
        "health": health,
        "rate": counted,
        "rate_svg": columns(counted.live, stacked=counted.backfill),
        "last_minute": counted.live[-1] + counted.backfill[-1],
        "recent": [r.event for r in records],
        "dead_letters": console.deps.runtime.log.stats()["dead_letters"],
        "source_names": {s.id: s.name for s in console.deps.runtime.catalog.list()},
    }


def _by_source_and_name(console: Console) -> list[tuple[str, int]]:
    names = {s.id: s.name for s in console.deps.runtime.catalog.list()}
    sql = (
        "SELECT source_id, coalesce(event, name, type) AS what, count(*) AS n FROM events"
        " GROUP BY 1, 2 ORDER BY n DESC LIMIT 15"
    )
    try:
        con = console.deps.warehouse()
        try:
            rows = con.execute(sql).fetchall()
        finally:
            con.close()
    except (duckdb.Error, SegflowError):
        return []
    return [(f"{names.get(s, s)} · {w}", int(n)) for s, w, n in rows]


def overview(console: Console, request: Request, form: Form) -> Response:
    rows = _by_source_and_name(console)
    return console.render(
        request, "overview.html", title="Overview", by_name_svg=bars(rows),
        by_name=rows, **live(console),
    )  # fmt: skip


def live_panel(console: Console, request: Request, form: Form) -> Response:
    return console.render(request, "_live.html", title="live", **live(console))


def routes(console: Console) -> list[Route]:
    return [
        Route("/console", console.page("read", overview), methods=["GET"]),
        Route("/console/overview/live", console.page("read", live_panel), methods=["GET"]),
    ]
