"""Real ``segflow serve`` processes on loopback for the operations tests (metrics, logs,
limits, backup, fuzzing), with sources and tokens made through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.net import free_port
from tests.support.wait import until


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "segflow.cli.main", *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    return out.stdout


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def source(data_dir: Path, name: str) -> str:
    """A source's write key, made the way ``segflow sources create`` makes it (in process:
    each CLI start costs seconds on a loaded machine; the CLI itself is tested elsewhere)."""
    from segflow.collect.catalog import SourceCatalog

    catalog = SourceCatalog(data_dir / "catalog.sqlite")
    try:
        return catalog.create(name)[1]
    finally:
        catalog.close()


def token(data_dir: Path, role: str) -> str:
    """An API token, made the way ``segflow tokens create`` makes it."""
    from segflow.catalog.tokens import TokenStore

    store = TokenStore(data_dir / "catalog.sqlite")
    try:
        return store.create(role)
    finally:
        store.close()


class Server:
    """``segflow serve`` in a subprocess; stderr (the application log) kept in a file."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        with self.log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "segflow.cli.main", "serve", "--single-process",
                 "--data-dir", str(data_dir),
                 "--port", str(self.port), *args],
                env={**os.environ, **(env or {})},
                cwd=data_dir.parent,  # relative paths a request names land in the test's tmp
                stdout=subprocess.DEVNULL,
                stderr=err,
            )  # fmt: skip
        until(self._up)
        assert self.proc.poll() is None, self.log_path.read_text()

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            return True
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(
        data_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> Server:
        server = Server(data_dir, env, args)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def ops() -> Any:
    """The helpers above as a fixture (test modules cannot import conftest)."""

    class Helpers:
        cli = staticmethod(cli)
        source = staticmethod(source)
        token = staticmethod(token)
        last_line = staticmethod(last_line)
        until = staticmethod(until)
        free_port = staticmethod(free_port)
        Server = Server  # for a module-scoped server (the module stops it)

    return Helpers
