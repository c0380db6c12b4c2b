"""``segflow serve`` as a real process on its own port and data directory, single-process or
supervised, with an admin API client and a collector client.

Tests take servers from the ``serve_factory`` fixture (tests/conftest.py), which stops every
server a test started; a module-scoped server is a :class:`Serve` the module stops itself::

    serve = serve_factory(env={"SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]'})
    serve.track({"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m1"})
    serve.kill()       # SIGKILL
    serve.start()      # a new process on the same data directory (a new port)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
from tests.support.cli import SEGFLOW
from tests.support.net import free_port
from tests.support.wait import until

from segflow.spec.events import Event, decode_event

ALLOW_LOOPBACK = {"SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]'}
"""The environment that lets a server deliver to a receiver on loopback."""


def gone(pid: int) -> bool:
    """The process ended (a zombie left to init counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def make_source(data: Path, name: str, config: dict[str, Any] | None = None) -> str:
    """A source's write key, made as ``segflow sources create [--source-config]`` makes it
    (in this process: a CLI start costs seconds on a loaded machine; the CLI itself is tested
    elsewhere). ``config``: its ``event_names`` and ``tracking_plan``."""
    import msgspec

    from segflow.collect.catalog import SourceCatalog, SourceConfig

    catalog = SourceCatalog(data / "catalog.sqlite")
    try:
        return catalog.create(name, msgspec.convert(config, SourceConfig) if config else None)[1]
    finally:
        catalog.close()


def make_token(data: Path, role: str) -> str:
    """An API token, made as ``segflow tokens create`` makes it."""
    from segflow.catalog.tokens import TokenStore

    store = TokenStore(data / "catalog.sqlite")
    try:
        return store.create(role)
    finally:
        store.close()


def read_events(data: Path) -> list[Event]:
    """Every event in a data directory's log (read-only, while the server runs)."""
    con = sqlite3.connect(f"file:{data / 'log.sqlite'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT payload FROM records ORDER BY partition, offset").fetchall()
    finally:
        con.close()
    return [decode_event(r[0]) for r in rows]


class Serve:
    """``segflow serve`` on ``data`` with ``args``; ``env`` on top of this process's.

    It makes a source (``source``, its key in ``write_key``) and a token (``role``, in
    ``token``) unless given None, starts, and waits until the admin API answers. Its output
    (stderr, the application log, and stdout) goes to ``log_path``, kept across restarts.

    >>> serve = Serve(tmp_path / "data", "--workers", "1", supervised=True)  # doctest: +SKIP
    >>> serve.api.get("/api/v1/status").json()["parts"]["supervisor"]  # doctest: +SKIP

    ``api_port=True`` (supervised): ``--api-port`` on a port of its own, ``api_url``; ``api``
    talks to it, ``collector`` to ``url``.
    """

    def __init__(
        self,
        data: Path,
        *args: str,
        env: dict[str, str] | None = None,
        supervised: bool = False,
        source: str | None = "web",
        role: str | None = "admin",
        api_port: bool = False,
    ) -> None:
        self.data = data
        self.api_port: int | None = None
        self.separate_api = api_port  # --api-port: the API on a port of its own (api_url)
        self.args = (*(() if supervised else ("--single-process",)), *args)
        self.env = {**os.environ, **(env or {})}
        self.write_key = make_source(data, source) if source else None
        self.token = make_token(data, role) if role else None
        self.log_path = data.parent / f"serve-{data.name}.log"
        self.start()

    def start(self) -> None:
        """Run a new process on the data directory, on a new port, and wait until it answers.
        A port is only free when it is picked: when another socket took it meanwhile (the
        server exits saying so), the server starts again on another."""
        for _ in range(3):
            if self._start_on(free_port()):
                return
            self._close_clients()
        raise AssertionError(f"segflow serve found no free port in 3 tries:\n{self.logs()}")

    def _start_on(self, port: int) -> bool:
        """Start on ``port``; False when the port was taken, AssertionError on another exit."""
        self.port = port
        self.url = self.api_url = f"http://127.0.0.1:{self.port}"
        api: tuple[str, ...] = ()
        if self.separate_api:
            self.api_port = free_port()
            self.api_url = f"http://127.0.0.1:{self.api_port}"
            api = ("--api-port", str(self.api_port))
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*SEGFLOW, "serve", "--data-dir", str(self.data), "--port", str(self.port),
                 *api, *self.args],
                env=self.env,
                cwd=self.data.parent,  # relative paths a request names land in the test's tmp
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.api = httpx.Client(base_url=self.api_url, headers=auth, timeout=60)
        key = (self.write_key, "") if self.write_key else None
        self.collector = httpx.Client(base_url=self.url, auth=key, timeout=60)
        try:
            until(self._up, what=f"segflow serve answering on {self.url}")
        except BaseException:
            self.stop()
            raise
        if self.proc.poll() is None:
            return True
        printed = self.logs()[mark:]
        assert "already in use" in printed, printed
        return False

    def _up(self) -> bool:
        """Answering, or exited (the caller tells a taken port from another failure)."""
        if self.proc.poll() is not None:
            return True
        if httpx.get(f"{self.api_url}/api/v1/health", timeout=2).status_code != 200:
            return False
        return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200  # the collector's

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        got = self.api.get("/api/v1/status")
        assert got.status_code == 200, got.text
        return got.json()  # type: ignore[no-any-return]

    def children(self) -> dict[str, dict[str, Any]]:
        """The supervised server's children by name."""
        return {c["name"]: c for c in self.status()["parts"]["supervisor"]["children"]}

    def track(self, *messages: dict[str, Any]) -> None:
        """Send ``messages`` in one batch; every one must be accepted."""
        answer = self.collector.post("/v1/batch", json={"batch": list(messages)})
        assert answer.status_code == 200 and answer.json().get("refused", []) == [], answer.text

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close_clients()

    def stop(self) -> None:
        """Close the clients (an open keep-alive connection holds a graceful stop back), then
        SIGTERM and wait (SIGKILL after 60 s); idempotent."""
        self._close_clients()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _close_clients(self) -> None:
        self.api.close()
        self.collector.close()
