"""``segflow audit``: the audit log of configuration changes (who, what, when, before/after)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings


def audit(
    limit: int = typer.Option(50, "--limit", help="newest entries to show"),
    action: str | None = typer.Option(
        None, "--action", help="prefix, e.g. segment. or token.create"
    ),
    target: str | None = typer.Option(None, "--target", help="one segment, destination, source..."),
    as_json: bool = typer.Option(False, "--json", help="print JSON (with before/after)"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Every change made through the API, the CLI or the console, newest first."""
    from segflow.catalog.audit import AuditLog
    from segflow.catalog.db import catalog_target

    log = AuditLog(catalog_target(resolve_settings(data_dir, config)))
    try:
        entries = log.list(limit=limit, action=action, target=target)
    finally:
        log.close()
    if as_json:
        typer.echo(json.dumps(msgspec.to_builtins(entries), indent=2))
        return
    table = Table("when (UTC)", "who", "what", "target")
    for e in entries:
        when = dt.datetime.fromtimestamp(e.at_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, e.actor, e.action, e.target)
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
