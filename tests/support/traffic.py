"""Ingest traffic for tests that watch a server under load: a thread posting batches.

>>> traffic = Traffic(serve.collector)  # doctest: +SKIP
>>> until(lambda: traffic.acked >= 50); acked = traffic.finish()  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time

import httpx


class Traffic:
    """A client posting batches of unique events until stopped, retrying a batch (same
    messageIds) until it is acknowledged, so every event it sent is acknowledged once."""

    def __init__(self, collector: httpx.Client) -> None:
        self.collector = collector
        self.acked = 0
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [{"type": "track", "userId": f"u{(n + i) % 7}", "event": "Ping",
                      "messageId": f"m{n + i}", "properties": {"n": 1}} for i in range(10)]  # fmt: skip
            while True:
                try:
                    got = self.collector.post("/v1/batch", json={"batch": batch})
                    if got.status_code == 200 and got.json().get("accepted") == len(batch):
                        break
                except httpx.TransportError:
                    pass
                self.failures += 1
                time.sleep(0.05)
            n += len(batch)
            self.acked = n

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive()
        return self.acked
