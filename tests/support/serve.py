"""A supervised ``segflow serve`` as a real process on its own port and data directory, and
the polling helpers of the tests that drive one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from tests.support.net import free_port
from tests.support.wait import until

CLI = [sys.executable, "-m", "segflow.cli.main"]


def cli(*args: str) -> str:
    out = subprocess.run([*CLI, *args], check=True, capture_output=True, text=True, timeout=60)
    return out.stdout.strip().splitlines()[-1]


def gone(pid: int) -> bool:
    """The process ended (a zombie left to init counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class Serve:
    """A supervised ``segflow serve`` on its own port and data directory."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.data = tmp / "data"
        write_key = cli("sources", "create", "web", "--data-dir", str(self.data))
        token = cli("tokens", "create", "--role", "admin", "--data-dir", str(self.data))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.err_path = tmp / "serve.err"
        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--data-dir", str(self.data), "--port", str(self.port), *args],
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        self.api = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.collector = httpx.Client(base_url=self.url, auth=(write_key, ""), timeout=30)
        until(self._up, what="the admin API answers")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.stderr()
        try:
            return self.api.get("/api/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        got = self.api.get("/api/v1/status")
        assert got.status_code == 200, got.text
        return got.json()  # type: ignore[no-any-return]

    def children(self) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.status()["parts"]["supervisor"]["children"]}

    def close(self) -> None:
        self.api.close()
        self.collector.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
