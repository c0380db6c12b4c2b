"""The CLI end to end: tokens create, process --until-idle, profiles show."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from segflow.catalog.tokens import TokenStore
from segflow.spec import Event


def segflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segflow.cli.main", *args],
        capture_output=True,
        text=True,
        env={"SEGFLOW_LOG__PARTITIONS": "4", "PATH": ""},
    )


def test_tokens_process_and_show(
    make_data_dir: Callable[[str, list[Event]], Path], gen_events: Callable[..., list[Event]]
) -> None:
    data_dir = make_data_dir("d", gen_events(500, people=20))
    out = segflow("tokens", "create", "--role", "read", "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    info = TokenStore(data_dir / "catalog.sqlite").verify(token)
    assert info is not None and info.role == "read"
    assert (
        segflow("tokens", "create", "--role", "owner", "--data-dir", str(data_dir)).returncode == 2
    )

    out = segflow("process", "--data-dir", str(data_dir), "--until-idle")
    assert out.returncode == 0, out.stderr
    assert "processed 500 events" in out.stdout
    out = segflow(
        "profiles", "show", "email:p3@example.com", "--events", "2", "--data-dir", str(data_dir)
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert ("user_id", "user-3") in {(i["type"], i["value"]) for i in body["identities"]}
    assert len(body["events"]) == 2
    assert (
        segflow("profiles", "show", "user_id:nobody", "--data-dir", str(data_dir)).returncode == 1
    )
