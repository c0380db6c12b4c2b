"""``segflow serve --http-server granian`` serves the same app (when granian is installed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("granian")


def test_serve_under_granian(tmp_path: Path, helpers: Any) -> None:
    data_dir = tmp_path / "data"
    key = helpers.create_source(data_dir, "web")
    port = helpers.free_port()
    with (tmp_path / "granian.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segflow.cli.main", "serve", "--single-process", "--data-dir", str(data_dir),
             "--port", str(port),
             "--http-server", "granian"],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)  # polling for the process to come up, not time logic
        r = httpx.post(
            f"{url}/v1/batch",
            auth=(key, ""),
            json={"batch": [{"type": "identify", "userId": "g", "messageId": "g1"}]},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1
        assert [e.message_id for e in helpers.read_events(data_dir)] == ["g1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
