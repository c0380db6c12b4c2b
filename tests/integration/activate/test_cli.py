"""``segflow destinations`` and ``segflow deliveries`` against a data directory."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from segflow.cli.main import _register_all, app


def test_create_subscribe_list_replay(tmp_path: Path) -> None:
    _register_all()
    runner = CliRunner()
    env = {"SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]'}
    d = ["--data-dir", str(tmp_path)]
    refused = runner.invoke(
        app, ["destinations", "create", "x", "--url", "http://10.0.0.1/", *d], env=env
    )
    assert refused.exit_code == 2
    created = runner.invoke(
        app,
        [
            "destinations",
            "create",
            "crm",
            "--url",
            "http://127.0.0.1:9/h",
            "--set",
            "batch_max=5",
            *d,
        ],
        env=env,
    )
    assert created.exit_code == 0, created.output
    out = json.loads(created.output)
    assert out["secret"].startswith("whsec_") and out["destination"]["batch_max"] == 5
    sub = runner.invoke(
        app, ["destinations", "subscribe", "crm", "vip", "--kind", "entered", *d], env=env
    )
    assert json.loads(sub.output)["subscription"]["kinds"] == ["entered"]
    listed = json.loads(runner.invoke(app, ["destinations", "list", *d], env=env).output)
    assert listed[0]["stats"]["pending"] == 0
    replay = runner.invoke(
        app, ["deliveries", "replay", "--destination", "crm", "--since", "2024-01-01T00:00:00", *d]
    )
    assert json.loads(replay.output) == {"replayed": 0, "superseded": 0}
    missing = runner.invoke(app, ["deliveries", "list", "--destination", "nope", *d])
    assert missing.exit_code == 2
