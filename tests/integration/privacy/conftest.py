"""Helpers for the privacy tests: a real ``segflow serve``, a real webhook receiver, polling."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.net import free_port
from tests.support.wait import until


def cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "segflow.cli.main", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip()


class Hooks:
    """A real webhook receiver on loopback keeping every request body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.status = 204  # what it answers (a 5xx makes segflow retry)
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if hooks.status < 300:
                    hooks.bodies.append(body)
                self.send_response(hooks.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Serve:
    """``segflow serve`` on a data directory, in a child process, with API and collector clients."""

    def __init__(self, data: Path, env: dict[str, str] | None = None) -> None:
        self.data = data
        source = f"web-{uuid.uuid4().hex[:8]}"
        self.write_key = cli("sources", "create", source, "--data-dir", str(data)).splitlines()[-1]
        token = cli("tokens", "create", "--role", "admin", "--data-dir", str(data)).splitlines()[-1]
        self.port = free_port()
        self.log_path = data.parent / f"serve-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "segflow.cli.main",
                "serve",
                "--single-process",
                "--data-dir",
                str(data),
                "--port",
                str(self.port),
            ],
            env={**os.environ, "SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]', **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        until(self._up)
        assert self.proc.poll() is None, self.log_path.read_text()
        auth = {"Authorization": f"Bearer {token}"}
        self.api = httpx.Client(base_url=self.url, headers=auth, timeout=60)
        self.collector = httpx.Client(base_url=self.url, auth=(self.write_key, ""), timeout=60)

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return self.proc.poll() is not None

    def stop(self) -> None:
        """Stop the server (if it still runs) and close the clients (idempotent)."""
        self.api.close()
        self.collector.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self._log.close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    receiver = Hooks()
    yield receiver
    receiver.close()


@pytest.fixture
def poll() -> Callable[..., Any]:
    return until


@pytest.fixture
def start_serve() -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(data: Path, env: dict[str, str] | None = None) -> Serve:
        server = Serve(data, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Composed:
    """Every part of a serve process, wired by ``segflow.server.compose``, in this process.

    The services run (processor, loader, delivery, ...) except the regulation runner, which
    the test drives with :meth:`regulate` (``runner.run_once``), so a test decides when a
    regulation runs and can interrupt it.
    """

    def __init__(self, data: Path, **overrides: Any) -> None:
        from segflow.config import load_settings
        from segflow.server.compose import assemble
        from segflow.serving.runtime import Runtime

        sections: dict[str, Any] = {
            "server": {"data_dir": str(data)},
            "ml": {"schedule_enabled": False},
            "warehouse": {"flush_interval_ms": 50},
            "stream": {"poll_interval_ms": 20},
            "privacy": {"notify_timeout_s": 10.0, "step_timeout_s": 60.0},
        }
        for name, values in overrides.items():
            sections.setdefault(name, {}).update(values)
        self.data = data
        self.runtime = Runtime.open(load_settings(env={}, overrides=sections))
        self.parts = assemble(self.runtime)
        assert self.parts.privacy is not None
        self.privacy = self.parts.privacy
        self.source, _ = self.runtime.catalog.create("web")
        self.started = [s for s in self.parts.services if s is not self.privacy.runner]
        for service in self.started:
            service.start()

    def ingest(self, *messages: dict[str, Any]) -> Any:
        """Messages through the collector's ingestion service (acknowledged once durable)."""
        now = int(time.time() * 1000)
        return self.runtime.ingestor.ingest(self.source, list(messages), received_at_ms=now)

    def settled(self) -> None:
        """Wait until the processor and the loader have consumed the whole log."""
        from segflow.warehouse.connection import connect, warehouse_path
        from segflow.warehouse.loader import read_cursors

        end = self.runtime.log.end_offsets()

        def done() -> bool:
            tx = self.parts.processor.store.begin_global()
            try:
                processed = all(tx.get_offset(p) >= o for p, o in end.items())
            finally:
                tx.rollback()
            con = connect(warehouse_path(self.data))
            try:
                cursors = read_cursors(con)
            finally:
                con.close()
            loaded = all(cursors.get(f"log:{p}", 0) >= o for p, o in end.items())
            return processed and loaded

        until(done)

    def wait(self, predicate: Callable[[], Any], deadline_s: float = 60.0) -> Any:
        return until(predicate, deadline_s)

    def regulate(self, kind: str, *identifiers: tuple[str, str]) -> Any:
        """Submit a regulation and run the runner until it is no longer open."""
        reg = self.privacy.service.submit(
            kind, [{"type": t, "value": v} for t, v in identifiers], actor="test"
        )
        self.privacy.runner.run_once()
        return self.privacy.service.get(reg.id)

    def profile(self, id_type: str, value: str) -> Any:
        """The committed profile of an identifier (None when there is none)."""
        from segflow.stream.compose import build_reader

        reader = build_reader(self.runtime.settings, self.runtime.log)
        try:
            return reader.lookup(id_type, value)
        finally:
            reader.reader.close()

    def warehouse(self, sql: str, *args: Any) -> list[Any]:
        from segflow.warehouse.connection import connect, warehouse_path

        con = connect(warehouse_path(self.data))
        try:
            return con.execute(sql, list(args)).fetchall()
        finally:
            con.close()

    def close(self) -> None:

        for service in reversed(self.started):
            service.stop()
        self.runtime.close()


@pytest.fixture
def composed(tmp_path: Path) -> Iterator[Callable[..., Composed]]:
    made: list[Composed] = []

    def make(**overrides: Any) -> Composed:
        parts = Composed(tmp_path / f"data{len(made)}", **overrides)
        made.append(parts)
        return parts

    yield make
    for parts in made:
        parts.close()


@pytest.fixture
def segflow_cli() -> Callable[..., str]:
    """Run ``segflow ARGS`` in a child process; returns its standard output."""
    return cli
