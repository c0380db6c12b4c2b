"""SIGKILL under concurrent load: every messageId that got a 200 is in the log exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.support.serve import Serve, make_source, read_events

ACKED_TARGET = 10_000


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_message(
    tmp_path: Path, serve_factory: Callable[..., Serve]
) -> None:
    data_dir = tmp_path / "data"
    key = make_source(data_dir, "crash")
    server = serve_factory(data=data_dir, source=None, role=None)
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, auth=(key, ""), timeout=10) as client:
            for n in range(100_000):
                ids = [f"w{worker}-{n}-{i}" for i in range(25)]
                # every third request repeats the previous one, as a retrying SDK would
                batch_ids = ids if n % 3 else [f"w{worker}-{max(n - 1, 0)}-{i}" for i in range(25)]
                body = {
                    "batch": [
                        {"type": "track", "userId": f"u{i}", "event": "E", "messageId": m}
                        for i, m in enumerate(batch_ids)
                    ]
                }
                try:
                    r = client.post("/v1/batch", json=body)
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 200:
                    with lock:
                        acked.extend(batch_ids)
                        if len(acked) >= ACKED_TARGET:
                            enough.set()

    workers = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    for w in workers:
        w.start()
    enough.wait(60)
    server.kill()
    for w in workers:
        w.join(30)
    assert len(acked) >= ACKED_TARGET

    server.start()  # a new process on the same data directory
    restarted = server
    try:
        counts = Counter(e.message_id for e in read_events(data_dir))
        assert all(counts[m] == 1 for m in set(acked)), (
            "an acknowledged message is missing or duplicated"
        )
        assert max(counts.values()) == 1
        with httpx.Client(
            base_url=restarted.url, auth=(key, "")
        ) as client:  # still serving, offsets go on
            r = client.post(
                "/v1/batch",
                json={"batch": [{"type": "identify", "userId": "after", "messageId": acked[0]}]},
            )
            assert r.json()["duplicates"] == 1
    finally:
        restarted.stop()
