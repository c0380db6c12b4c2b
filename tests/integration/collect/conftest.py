"""A real ``segflow serve`` process on loopback, sources created through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.net import free_port

from segflow.spec.events import Event, decode_event


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "segflow.cli.main", *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    return out.stdout


def create_source(data_dir: Path, name: str, config: dict[str, Any] | None = None) -> str:
    """Create a source with the CLI; the write key is the last line of its output."""
    args = ["sources", "create", name, "--data-dir", str(data_dir)]
    if config is not None:
        path = data_dir.parent / f"{name}-config.json"
        path.write_text(json.dumps(config))
        args += ["--source-config", str(path)]
    return cli(*args).strip().splitlines()[-1]


class Server:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "segflow.cli.main",
                    "serve",
                    "--single-process",
                    "--data-dir",
                    str(data_dir),
                    "--port",
                    str(self.port),
                ],
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling for a process to come up, not time logic
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def read_events(data_dir: Path) -> list[Event]:
    """Every event in the data directory's log (read-only, while the server runs)."""
    con = sqlite3.connect(f"file:{data_dir / 'log.sqlite'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT payload FROM records ORDER BY partition, offset").fetchall()
    finally:
        con.close()
    return [decode_event(r[0]) for r in rows]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("collect") / "data"


@pytest.fixture(scope="module")
def write_key(data_dir: Path) -> str:
    return create_source(data_dir, "web")


@pytest.fixture(scope="module")
def server(data_dir: Path, write_key: str) -> Iterator[Server]:
    srv = Server(data_dir)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def helpers() -> Any:
    """The module's helpers as a fixture (test modules cannot import conftest)."""

    class Helpers:
        cli = staticmethod(cli)
        free_port = staticmethod(free_port)
        create_source = staticmethod(create_source)
        read_events = staticmethod(read_events)
        Server = globals()["Server"]

    return Helpers
