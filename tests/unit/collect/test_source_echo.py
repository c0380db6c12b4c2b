"""What ``segflow sources list --json`` echoes is the config that is enforced (issue #17:
``allow_unplanned_events = false`` was enforced but dropped from the echo, being the default)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from segflow.cli.main import _register_all, app


def test_sources_list_echoes_every_tracking_plan_setting(tmp_path: Path) -> None:
    config = tmp_path / "web.toml"
    config.write_text(
        '[tracking_plan]\nmode = "block"\nallow_unplanned_events = false\n'
        '[tracking_plan.events."Order Completed"]\nallow_unplanned_properties = true\n'
    )
    data = ["--data-dir", str(tmp_path / "data")]
    if not app.registered_groups:
        _register_all()
    runner = CliRunner()
    made = runner.invoke(app, ["sources", "create", "web", "--source-config", str(config), *data])
    assert made.exit_code == 0, made.output
    listed = runner.invoke(app, ["sources", "list", "--json", *data])
    assert listed.exit_code == 0, listed.output
    (web,) = json.loads(listed.stdout)
    plan = web["config"]["tracking_plan"]
    assert plan["mode"] == "block" and plan["allow_unplanned_events"] is False
    assert plan["events"]["Order Completed"]["allow_unplanned_properties"] is True
