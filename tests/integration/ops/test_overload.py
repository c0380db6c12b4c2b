"""Overload, bounded: far more concurrent senders than the server admits, a tiny log queue.

Excess is shed with 429 (log queue full) or 503 (too many requests in flight), each with
``Retry-After``; nothing else fails; every messageId that got a 200 is in the log (and
nothing else is); the queue never holds more than its bound. The full minute at twice the
sustainable rate is a benchmark (``benchmarks/overload.py``), not a test.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.support.serve import make_source

from segflow.spec.events import decode_event

SENDERS = 48
SECONDS = 3.0


async def _blast(url: str, key: str) -> tuple[Counter[int], set[str], list[str]]:
    statuses: Counter[int] = Counter()
    acked: set[str] = set()
    retry_after: list[str] = []
    counter = itertools.count()
    deadline = time.monotonic() + SECONDS
    limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)

    async def sender(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            n = next(counter)
            ids = [f"r{n}-{i}" for i in range(100)]
            batch = [{"type": "track", "userId": f"u{n % 97}", "event": "E", "messageId": m,
                      "properties": {"pad": "x" * 200}} for m in ids]  # fmt: skip
            answer = await client.post("/v1/batch", json={"batch": batch})
            statuses[answer.status_code] += 1
            if answer.status_code == 200:
                acked.update(ids)
            elif answer.status_code in (429, 503):
                retry_after.append(answer.headers.get("retry-after", ""))

    async with httpx.AsyncClient(base_url=url, auth=(key, ""), limits=limits, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(SENDERS)))
    return statuses, acked, retry_after


def test_overload_is_shed_with_retry_after_and_loses_no_acked_event(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    key = make_source(data, "web")
    env = {"SEGFLOW_LOG__MAX_PENDING_EVENTS": "300", "SEGFLOW_COLLECT__MAX_INFLIGHT_REQUESTS": "6"}
    server = serve_factory(data=data, env=env, source=None, role=None)
    statuses, acked, retry_after = asyncio.run(_blast(server.url, key))

    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[200] > 0 and statuses[429] + statuses[503] > 0, statuses
    assert retry_after and all(value.isdigit() and int(value) >= 1 for value in retry_after)
    metrics = httpx.get(f"{server.url}/metrics").text
    for status, reason in ((503, "overloaded"), (429, "log_backpressure")):
        if statuses[status]:
            assert (
                f'segflow_http_requests_refused_total{{app="collect",reason="{reason}"}}' in metrics
            )
    ready = httpx.get(f"{server.url}/healthz")
    assert ready.status_code == 200  # still serving after the storm
    server.stop()

    con = sqlite3.connect(f"file:{data / 'log.sqlite'}?mode=ro", uri=True)
    stored = [decode_event(p).message_id for (p,) in con.execute("SELECT payload FROM records")]
    con.close()
    assert len(stored) == len(set(stored))
    assert set(stored) == acked  # every 200 is durable; nothing refused was stored
