"""``segflow status``: the health of each part of a data directory (lags and backlogs)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings


def status(
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Events in the log, processor and loader lag (records), delivery backlog and dead letters."""
    from segflow.activate.secretbox import SecretBox
    from segflow.activate.store import DeliveryStore
    from segflow.log.drivers import open_event_log
    from segflow.server.status import status as read_status

    settings = resolve_settings(data_dir, config)
    log = open_event_log(settings)
    box = SecretBox.open(settings.data_path, settings.activate.secrets_key)
    delivery = DeliveryStore(settings.data_path / "delivery.sqlite", box=box)
    try:
        report = read_status(log, delivery)
    finally:
        delivery.close()
        log.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"segflow · {settings.data_path} · {report['events']:,} events")
    table.add_column("part")
    table.add_column("state")
    for part, values in report["parts"].items():
        table.add_row(part, ", ".join(f"{k} {v}" for k, v in values.items()))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
