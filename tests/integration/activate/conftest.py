"""Real receivers on loopback, a SQLite-backed change feed, worker factories and a real
``segflow serve`` process."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
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

    def __init__(
        self, behaviour: Behaviour | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
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

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

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

    def make(
        behaviour: Behaviour | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> Receiver:
        r = Receiver(behaviour, host, port)
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


class Serve:
    """A real ``segflow serve`` process on a data directory, with API and collector clients.

    ``kill()`` is SIGKILL; ``start()`` again runs a new process on the same directory.
    """

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data = data
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_key = self.cli("sources", "create", "web")
        self.token = self.cli("tokens", "create", "--role", "admin")
        self.log_path = data.parent / "serve.log"

    def cli(self, *args: str) -> str:
        """Run a ``segflow`` command in this process (saves an interpreter start); its last
        output line."""
        from typer.testing import CliRunner

        from segflow.cli.main import _register_all, app

        _register_all()
        result = CliRunner().invoke(app, [*args, "--data-dir", str(self.data)], env=self.env)
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[-1]

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "segflow.cli.main", "serve", "--single-process",
                 "--data-dir", str(self.data),
                 "--port", str(port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        self.api = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        self.collector = httpx.Client(base_url=url, auth=(self.write_key, ""), timeout=30)

        def up() -> bool:
            try:
                return self.api.get("/api/v1/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return self.proc is not None and self.proc.poll() is not None

        assert wait_until(up, 60) and self.proc.poll() is None, self.log_path.read_text()

    def track(self, *messages: dict[str, Any]) -> None:
        answer = self.collector.post("/v1/batch", json={"batch": list(messages)})
        assert answer.status_code == 200 and answer.json().get("refused", []) == [], answer.text

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close_clients()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self._close_clients()

    def _close_clients(self) -> None:
        for client in (getattr(self, "api", None), getattr(self, "collector", None)):
            if client is not None:
                client.close()


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Callable[[], Serve]]:
    made: list[Serve] = []

    def make() -> Serve:
        serve = Serve(
            tmp_path / f"data{len(made)}", {"SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]'}
        )
        made.append(serve)
        serve.start()
        return serve

    yield make
    for serve in made:
        serve.stop()
