"""``segflow sources create|list|configure|webhook|violations``: sources and write keys."""

from __future__ import annotations

import json
import os
import sys
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
from segflow.collect.webhooks.config import GenericMapping
from segflow.collect.webhooks.manage import (
    WebhookSettings,
    configure_webhook,
    public_source,
    remove_webhook,
)
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
        if isinstance(raw, dict) and raw.get("webhook") is not None:
            raise ValueError(
                "set a webhook with `segflow sources webhook` (it encrypts the secret)"
            )
        return msgspec.convert(raw, SourceConfig)
    except (OSError, ValueError, msgspec.ValidationError) as exc:
        raise typer.BadParameter(f"{path}: {exc}") from exc


def read_mapping(path: Path) -> GenericMapping:
    """A generic webhook's mapping from a YAML, TOML or JSON file."""
    import yaml

    try:
        text = path.read_text()
        raw = (
            tomllib.loads(text)
            if path.suffix == ".toml"
            else json.loads(text)
            if path.suffix == ".json"
            else yaml.safe_load(text)
        )
        return msgspec.convert(raw, GenericMapping)
    except (OSError, ValueError, yaml.YAMLError, msgspec.ValidationError) as exc:
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
        render.emit_json([public_source(s) for s in sources])
        return
    table = Table("name", "id", "event-name rules", "tracking plan", "webhook")
    for s in sources:
        plan, hook = s.config.tracking_plan, s.config.webhook
        table.add_row(
            s.name,
            s.id,
            str(len(s.config.event_names)),
            f"{plan.mode}, {len(plan.events)} events" if plan else "-",
            f"{hook.vendor} {hook.secret_fingerprint or ''}".strip() if hook else "-",
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
        catalog = _catalog(data_dir, config)
        new = msgspec.structs.replace(new, webhook=catalog.get(name).config.webhook)  # kept
        shown = public_source(catalog.configure(name, new))["config"]
    except SegflowError as exc:
        raise _fail(exc) from exc
    _audit(data_dir, config, "source.configure", name, None, shown)
    typer.echo(f"configured source {name}")


@sources_app.command("webhook")
def webhook(
    name: str = SourceName,
    vendor: str | None = typer.Option(
        None, help="stripe, zendesk, hubspot, salesforce, sendgrid, mailchimp or generic"
    ),
    secret_env: str | None = typer.Option(
        None, help="the environment variable holding the vendor's signing secret"
    ),
    secret_stdin: bool = typer.Option(False, help="read the vendor's secret from stdin"),
    public_key: str | None = typer.Option(None, help="SendGrid's verification key"),
    organization_id: str | None = typer.Option(None, help="Salesforce's organization id"),
    mapping: Path | None = typer.Option(None, help="generic: YAML/TOML/JSON mapping file"),
    tolerance_s: int = typer.Option(300, help="replay window of signed timestamps (s)"),
    remove: bool = typer.Option(False, "--remove", help="stop taking webhooks"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Make a source take a vendor's webhooks at /v1/webhooks/VENDOR (docs/webhooks.md); the
    secret is stored encrypted, and Mailchimp's URL secret, when generated, printed once."""
    from segflow.activate.secretbox import SecretBox

    settings = resolve_settings(data_dir, config)
    catalog = _catalog(data_dir, config)
    try:
        if remove:
            remove_webhook(catalog, name)
            _audit(data_dir, config, "source.webhook.delete", name, None, None)
            typer.echo(f"source {name} takes no webhooks")
            return
        if vendor is None:
            raise typer.BadParameter("--vendor is required (or --remove)")
        secret = os.environ.get(secret_env) if secret_env else None
        if secret_env and not secret:
            raise typer.BadParameter(f"${secret_env} is not set")
        if secret_stdin:
            secret = sys.stdin.readline().strip()
        wanted = WebhookSettings(
            vendor=vendor,
            secret=secret,
            public_key=public_key,
            organization_id=organization_id,
            tolerance_s=tolerance_s,
            mapping=read_mapping(mapping) if mapping else None,
        )
        box = SecretBox.open(settings.data_path, settings.activate.secrets_key)
        source, made = configure_webhook(catalog, name, wanted, box)
    except SegflowError as exc:
        raise _fail(exc) from exc
    _audit(data_dir, config, "source.webhook", name, None, public_source(source))
    typer.echo(f"source {name} takes {vendor} webhooks at /v1/webhooks/{vendor}")
    if made:
        typer.echo("its URL secret (shown once; add ?secret=... to the webhook URL):")
        typer.echo(made)


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
