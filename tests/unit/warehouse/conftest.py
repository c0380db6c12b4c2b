from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from segflow.spec import Event

_ids = itertools.count()


def make_event(**kw: Any) -> Event:
    base: dict[str, Any] = {
        "type": "track",
        "message_id": f"m{next(_ids)}",
        "source_id": "web",
        "timestamp_ms": 0,
        "received_at_ms": 0,
        "event": "Clicked",
    }
    base.update(kw)
    if "received_at_ms" not in kw:
        base["received_at_ms"] = base["timestamp_ms"]
    if base.get("user_id") is None and base.get("anonymous_id") is None:
        base["user_id"] = "u1"
    return Event(**base)


@pytest.fixture
def event_factory() -> Callable[..., Event]:
    return make_event
