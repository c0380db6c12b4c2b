"""``segflow sources create|list|configure|violations``: sources and write keys."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from segflow.audit import AuditLog, cli_actor
from segflow.catalogdb import catalog_target
from segflow.cli import render
from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import JsonOption
from segflow.collect.catalog import SourceCatalog, SourceConfig
from segflow.errors import SegflowError

sources_app = typer.Typer(
    help="Sources (a website, an app, a backend) and their write keys, which SDKs send as the "
    "Basic-auth user of /v1/batch; event-name rules and tracking plans (docs/collection.md).",
    no_args_is_help=True,
)
SourceName = typer.Argument(..., help="the source's name (see `segflow sources list`)")


def _catalog(data_dir: Path | None, config: Path | None) -> SourceCatalog:
    return SourceCatalog(catalog_target(resolve_settings(data_dir, config)))


def _fail(exc: SegflowError) -> typer.Exit:
    typer.echo(json.dumps(exc.to_dict()), err=True)
    return typer.Exit(code=2)


def _audit(
    data_dir: Path | None, config: Path | None, action: str, target: str, before: Any, after: Any
) -> None:
    log = AuditLog(catalog_target(resolve_settings(data_dir, config)))
    try:
        log.record(cli_actor(), action, target, before, after)
    finally:
        log.close()


def _read_config(path: Path) -> SourceConfig:
    """A source config from a TOML or JSON file (``event_names``, ``tracking_plan``)."""
    try:
        raw = (
            tomllib.loads(path.read_text())
            if path.suffix == ".toml"
            else json.loads(path.read_text())
        )
        return msgspec.convert(raw, SourceConfig)
    except (OSError, ValueError, msgspec.ValidationError) as exc:
        raise typer.BadParameter(f"{path}: {exc}") from exc


@sources_app.command("create")
def create(
    name: str = typer.Argument(..., help="a name for the new source, e.g. web or ios"),
    source_config: Path | None = typer.Option(
        None, "--source-config", help="TOML/JSON: event_names, tracking_plan"
    ),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Create a source; its write key is printed as the last line (shown only once)."""
    catalog = _catalog(data_dir, config)
    try:
        source, key = catalog.create(name, _read_config(source_config) if source_config else None)
    except SegflowError as exc:
        raise _fail(exc) from exc
    _audit(data_dir, config, "source.create", source.name, None, source)
    typer.echo(f"created source {source.name} ({source.id}); its write key (shown once):")
    typer.echo(key)


@sources_app.command("list")
def list_sources(
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List sources (write keys are stored hashed and never shown again)."""
    sources = _catalog(data_dir, config).list()
    if as_json:
        render.emit_json(sources)
        return
    table = Table("name", "id", "event-name rules", "tracking plan")
    for s in sources:
        plan = s.config.tracking_plan
        table.add_row(
            s.name,
            s.id,
            str(len(s.config.event_names)),
            f"{plan.mode}, {len(plan.events)} events" if plan else "-",
        )
    Console().print(table)


@sources_app.command("configure")
def configure(
    name: str = SourceName,
    source_config: Path = typer.Argument(..., help="TOML/JSON file: event_names, tracking_plan"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Replace a source's event-name rules and tracking plan (a running server picks it up on restart)."""
    new = _read_config(source_config)
    try:
        _catalog(data_dir, config).configure(name, new)
    except SegflowError as exc:
        raise _fail(exc) from exc
    _audit(data_dir, config, "source.configure", name, None, new)
    typer.echo(f"configured source {name}")


@sources_app.command("violations")
def violations(
    name: str = SourceName,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Tracking-plan violations of a source, counted per event name."""
    try:
        found = _catalog(data_dir, config).violations(name)
    except SegflowError as exc:
        raise _fail(exc) from exc
    render.rows(found, ("event", "violation", "count", "last_seen_ms"), as_json=as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(sources_app, name="sources")
