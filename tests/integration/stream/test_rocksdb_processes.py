"""The RocksDB state across processes: ``segflow process`` writes ``state/``; a second
processor is refused clearly; ``serve --role api`` and ``segflow profiles`` beside it read the
state as RocksDB secondaries and follow the writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.support.cli import run
from tests.support.net import free_port, wait_for_port
from tests.support.state import consumed
from tests.support.wait import until

from segflow.spec import Event

N = 600


def env() -> dict[str, str]:
    return {**os.environ, "SEGFLOW_LOG__PARTITIONS": "4", "SEGFLOW_STREAM__STORE": "auto"}


def segflow(*args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env=env())


def test_a_processor_writes_while_the_api_and_the_cli_read_through_secondaries(
    make_data_dir: Callable[[str, list[Event]], Path], gen_events: Callable[..., list[Event]]
) -> None:
    data = make_data_dir("d", gen_events(N, people=30))
    token = segflow("tokens", "create", "--role", "read", "--data-dir", str(data))
    assert token.returncode == 0, token.stderr
    auth = {"Authorization": f"Bearer {token.stdout.strip().splitlines()[-1]}"}
    port = free_port()
    cmd = [sys.executable, "-m", "segflow.cli.main"]
    api = subprocess.Popen(
        [*cmd, "serve", "--role", "api", "--data-dir", str(data), "--port", str(port)],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    writer = subprocess.Popen(
        [*cmd, "process", "--data-dir", str(data)],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for_port(port, 60)
        until(lambda: consumed(data / "state") == N)  # the writer consumed the whole log
        assert not (data / "state.sqlite").exists()

        second = segflow("process", "--data-dir", str(data), "--until-idle")
        assert second.returncode == 2, second.stderr
        refused = json.loads(second.stderr.strip().splitlines()[-1])
        assert refused["code"] == "state_store_busy"
        assert refused["details"] == {"path": str(data / "state"), "pid": writer.pid}

        shown = segflow("profiles", "show", "email:p3@example.com", "--data-dir", str(data))
        assert shown.returncode == 0, shown.stderr
        identities = {(i["type"], i["value"]) for i in json.loads(shown.stdout)["identities"]}
        assert ("user_id", "user-3") in identities

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth) as client:
            found = client.get("/api/v1/profiles/user_id:user-3")
            assert found.status_code == 200, found.text
            assert found.json()["id"] == json.loads(shown.stdout)["id"]
            assert client.get("/api/v1/profiles/user_id:nobody").status_code == 404
    finally:
        for proc in (writer, api):
            proc.send_signal(signal.SIGTERM)
        _, errors = writer.communicate(timeout=60)
        api.wait(60)
    assert writer.returncode == 0, errors
    # stopped: the next processor opens the directory again
    again = segflow("process", "--data-dir", str(data), "--until-idle")
    assert again.returncode == 0, again.stderr
