"""``segflow serve --http-server granian`` serves the same app (when granian is installed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.support.serve import Serve, read_events

pytest.importorskip("granian")


def test_serve_under_granian(serve_factory: Callable[..., Serve]) -> None:
    serve = serve_factory("--http-server", "granian", role=None)
    r = serve.collector.post(
        "/v1/batch", json={"batch": [{"type": "identify", "userId": "g", "messageId": "g1"}]}
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert [e.message_id for e in read_events(serve.data)] == ["g1"]
