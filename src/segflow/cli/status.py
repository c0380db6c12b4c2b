"""``segflow status``: the health of each part of a data directory (lags and backlogs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.config import Settings


def status(
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Events in the log, processor and loader lag (records), delivery backlog and dead letters."""
    from segflow.activate.secretbox import SecretBox
    from segflow.activate.store import DeliveryStore
    from segflow.log.drivers import open_event_log
    from segflow.serving.status import status as read_status
    from segflow.syncs.store import summary as sync_summary

    settings = resolve_settings(data_dir, config)
    log = open_event_log(settings)
    box = SecretBox.open(settings.data_path, settings.activate.secrets_key)
    delivery = DeliveryStore(settings.data_path / "delivery.sqlite", box=box)
    try:
        report = read_status(log, delivery)
    finally:
        delivery.close()
        log.close()
    report["parts"]["processor"]["backfill"] = _backfill(settings)
    report["parts"]["syncs"] = sync_summary(settings.data_path)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"segflow · {settings.data_path} · {report['events']:,} events")
    table.add_column("part")
    table.add_column("state")
    for part, values in report["parts"].items():
        table.add_row(part, ", ".join(f"{k} {_text(v)}" for k, v in values.items()))
    Console().print(table)


def _text(value: Any) -> str:
    """A part's figure as a line of the table (a backfill as its progress)."""
    if isinstance(value, dict) and "vendor" in value and "state" in value:  # a pulled sync
        error = f", last error: {value['last_error']}" if value.get("last_error") else ""
        return f"{value['vendor']}: {value['state']}, {value['total_objects']:,} objects{error}"
    if isinstance(value, dict) and "running" in value:
        if not value["running"]:
            return "complete"
        segments = ", ".join(value["segments"]) or "the rule set"
        return f"{value['done']:.0%} of profiles rebuilt ({segments} filling)"
    return str(value)


def _backfill(settings: Settings) -> dict[str, Any]:
    """Where the processor's backfill of the current rule set is (from its committed state)."""
    from segflow.catalog.db import catalog_target
    from segflow.segments.service import SegmentService
    from segflow.segments.store import DefinitionStore
    from segflow.stream import backfill
    from segflow.stream.compose import open_state_reader

    definitions = DefinitionStore(catalog_target(settings))
    try:
        program = SegmentService(definitions).program()
    finally:
        definitions.close()
    reader = open_state_reader(settings)
    try:
        found = backfill.progress(reader, program.plan.fingerprint, program.definitions)
    finally:
        reader.close()
    return msgspec.to_builtins(found)  # type: ignore[no-any-return]


def register(app: typer.Typer) -> None:
    app.command("status")(status)
