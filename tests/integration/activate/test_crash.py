"""SIGKILL of the delivery process with deliveries pending: after a restart they arrive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import msgspec
from tests.support.wait import until

from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore

WORKER = textwrap.dedent(
    """
    import sqlite3, sys, threading, msgspec
    from segflow.activate.payloads import DictProfiles
    from segflow.activate.ssrf import UrlGuard
    from segflow.activate.store import DeliveryStore
    from segflow.activate.worker import DeliveryWorker
    from segflow.spec import AnyChange

    class Feed:
        def __init__(self, path):
            self.con = sqlite3.connect(path, check_same_thread=False)
            self.lock = threading.Lock()
        def read(self, after_seq, limit=1000):
            with self.lock:
                rows = self.con.execute(
                    "SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit)).fetchall()
            return [(s, msgspec.msgpack.decode(b, type=AnyChange)) for s, b in rows]

    store = DeliveryStore(sys.argv[1])
    worker = DeliveryWorker(store, Feed(sys.argv[2]), DictProfiles(),
                            guard=UrlGuard(["127.0.0.1/32"]), poll_interval_ms=20)
    worker.start()
    print("started", flush=True)
    threading.Event().wait()
    """
)


def spawn(tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(tmp_path / "delivery.sqlite"),
            str(tmp_path / "feed.sqlite"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def test_sigkill_with_pending_deliveries_then_restart(
    tmp_path: Path, receiver_factory: Any, sqlite_feed: Any, make_changes: Any
) -> None:
    up = threading.Event()
    receiver = receiver_factory(lambda n, h, b: (200 if up.is_set() else 503, {}, 0.0))
    service = ActivationService(
        DeliveryStore(tmp_path / "delivery.sqlite"), guard=UrlGuard(["127.0.0.1/32"])
    )
    service.create_destination(
        {"name": "crm", "url": receiver.url, "backoff_base_ms": 20, "backoff_max_ms": 200}
    )
    service.subscribe("crm", "vip")
    sent = make_changes(profiles=5, per_profile=4)
    for change in sent:
        sqlite_feed.append(change)

    proc = spawn(tmp_path)
    try:
        assert until(
            lambda: service.store.stats("crm").pending == 20 and len(receiver.requests) >= 5
        )
    finally:
        kill(proc)
    assert receiver.ok() == []

    up.set()
    proc = spawn(tmp_path)
    try:
        assert until(lambda: service.store.stats("crm").delivered == 20)
    finally:
        kill(proc)
    ids = {msgspec.json.decode(r.body)["data"]["id"] for r in receiver.ok()}
    assert len(ids) == 20
    stats = service.store.stats("crm")
    assert (stats.pending, stats.dead) == (0, 0)
