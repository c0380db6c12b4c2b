"""Overview: the live event rate, events by source and name, each part's lag, recent events.

The rate and the recent events come from the log's tail (live, not waiting for the loader);
events by source and name come from the warehouse (the full loaded history). The live panel
is re-fetched every few seconds by the page's script (``/console/overview/live``).
"""

from __future__ import annotations

from typing import Any

import duckdb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.errors import SegflowError
from segflow.log.base import Record
from segflow.server.status import status
from segflow.ui.svg import bars, columns
from segflow.ui.web import Console, Form, now_ms

MINUTES = 30
TAIL = 500


def _tail(console: Console) -> list[Record]:
    log = console.deps.runtime.log
    records: list[Record] = []
    for partition, end in log.end_offsets().items():
        records += log.read(partition, max(0, end - TAIL), TAIL)
    return sorted(records, key=lambda r: r.event.received_at_ms, reverse=True)


def _rate(records: list[Record], now: int) -> list[int]:
    """Events received per minute over the last :data:`MINUTES` (oldest first)."""
    counts = [0] * MINUTES
    for r in records:
        age = (now - r.event.received_at_ms) // 60_000
        if 0 <= age < MINUTES:
            counts[MINUTES - 1 - age] += 1
    return counts


def live(console: Console) -> dict[str, Any]:
    now, records = now_ms(), _tail(console)
    health = status(console.deps.runtime.log, console.deps.activation.store)
    rate = _rate(records, now)
    return {
        "health": health,
        "rate_svg": columns(rate),
        "last_minute": rate[-1],
        "recent": [r.event for r in records[:20]],
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
