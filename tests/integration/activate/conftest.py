"""Real receivers on loopback, a SQLite-backed change feed, and worker factories."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

from segflow.spec import AnyChange, MembershipChange

Behaviour = Callable[[int, dict[str, str], bytes], tuple[int, dict[str, str], float]]


class Received(msgspec.Struct):
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """A threaded HTTP server; ``behaviour(n, headers, body) -> (status, headers, delay_s)``."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour: Behaviour = behaviour or (lambda n, h, b: (200, {}, 0.0))
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    n = len(receiver.requests)
                status, extra, delay = receiver.behaviour(n, headers, body)
                if delay:
                    receiver.release.wait(delay)
                with receiver.lock:
                    receiver.requests.append(Received(headers=headers, body=body, status=status))
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ok(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(behaviour: Behaviour | None = None) -> Receiver:
        r = Receiver(behaviour)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


class SqliteFeed:
    """A ChangeFeed over a SQLite table (the shape of the processor's outbox)."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, body BLOB)")
        self.lock = threading.Lock()

    def append(self, change: AnyChange) -> None:
        with self.lock:
            self.con.execute(
                "INSERT INTO changes (body) VALUES (?)", (msgspec.msgpack.encode(change),)
            )

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        with self.lock:
            rows = self.con.execute(
                "SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(s, msgspec.msgpack.decode(b, type=AnyChange)) for s, b in rows]


def changes(profiles: int, per_profile: int, segment: str = "vip") -> list[MembershipChange]:
    """Alternating entered/exited changes, interleaved across profiles, sequence per profile."""
    out = []
    for i in range(per_profile):
        for p in range(profiles):
            kind = "entered" if i % 2 == 0 else "exited"
            out.append(
                MembershipChange(
                    profile_id=f"p{p}",
                    segment=segment,
                    kind=kind,
                    at_ms=1_700_000_000_000 + i,
                    sequence=i + 1,
                )
            )
    return out


def wait_until(predicate: Callable[[], bool], deadline_s: float = 30.0) -> bool:
    """Poll for an asynchronous outcome (a liveness bound, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def sqlite_feed(tmp_path: Path) -> SqliteFeed:
    return SqliteFeed(tmp_path / "feed.sqlite")


@pytest.fixture
def make_changes() -> Callable[..., list[MembershipChange]]:
    return changes


@pytest.fixture
def until() -> Callable[..., bool]:
    return wait_until
