"""Fixtures: a seeded event stream generator, data directories with a real SQLite log."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event

T0 = 1_700_000_000_000


def generate(n: int, seed: int = 7, people: int = 300) -> list[Event]:
    """Anonymous browsing, logins (identify with email), server-side email events, shared devices."""
    rnd = random.Random(seed)
    events = []
    for i in range(n):
        person = rnd.randrange(people)
        device = f"dev-{person}-{rnd.randrange(2)}" if rnd.random() > 0.02 else "shared-kiosk"
        ts = T0 + i * 1000 + rnd.randrange(-5000, 5000)
        roll = rnd.random()
        common = {
            "message_id": f"m{i:07d}",
            "source_id": "web",
            "timestamp_ms": ts,
            "received_at_ms": ts,
        }
        if roll < 0.7:
            events.append(
                Event(
                    type="track",
                    anonymous_id=device,
                    event=rnd.choice(["Viewed", "Added", "Searched"]),
                    **common,
                )
            )
        elif roll < 0.85:
            events.append(
                Event(
                    type="identify",
                    anonymous_id=device,
                    user_id=f"user-{person}",
                    traits={"email": f"P{person}@Example.com", "plan": rnd.choice(["free", "pro"])},
                    **common,
                )
            )
        elif roll < 0.95:
            events.append(
                Event(
                    type="track",
                    user_id=f"user-{person}",
                    event="Order Completed",
                    properties={"revenue": rnd.randrange(100)},
                    **common,
                )
            )
        else:
            events.append(
                Event(
                    type="track",
                    anonymous_id=f"srv-{i}",
                    event="Support Ticket Created",
                    context={"traits": {"email": f"p{person}@example.com"}},
                    **common,
                )
            )
    return events


@pytest.fixture
def make_data_dir(tmp_path: Path) -> Callable[[str, list[Event]], Path]:
    def make(name: str, events: list[Event]) -> Path:
        data_dir = tmp_path / name
        data_dir.mkdir()
        log = SqliteEventLog(data_dir / "log.sqlite", partitions=4)
        for start in range(0, len(events), 5000):
            log.append(events[start : start + 5000])
        log.close()
        return data_dir

    return make


@pytest.fixture
def gen_events() -> Callable[..., list[Event]]:
    return generate
