"""``segflow sources sync add|list|run|remove``: pulled syncs (docs/syncs.md).

``run`` pulls now, in this process, through the same path as ``segflow import`` (the
``Ingestor`` over the data directory's log); ``serve`` runs each sync on its interval.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from segflow.cli import render
from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import JsonOption
from segflow.errors import SegflowError

sync_app = typer.Typer(
    help="Pulled syncs: HubSpot, Zendesk, Stripe and Salesforce objects as identify and track "
    "events, incremental by each API's cursor (docs/syncs.md; needs the `sources` extra).",
    no_args_is_help=True,
)
SyncName = typer.Argument(..., help="the sync's name (see `segflow sources sync list`)")


def _fail(exc: SegflowError) -> typer.Exit:
    typer.echo(json.dumps(exc.to_dict(), default=str), err=True)
    return typer.Exit(code=2)


@sync_app.command("add")
def add(
    name: str = typer.Argument(..., help="a name for the sync, e.g. stripe-live"),
    vendor: str = typer.Option(..., "--vendor", help="hubspot, zendesk, stripe or salesforce"),
    source: str = typer.Option(..., "--source", help="the segflow source to store events under"),
    credential_env: str | None = typer.Option(
        None, "--credential-env", help="the environment variable holding the API token"
    ),
    email: str | None = typer.Option(
        None, "--email", help="Zendesk: the agent whose API token it is (basic auth)"
    ),
    client_id: str | None = typer.Option(
        None, "--client-id", help="Salesforce: the connected app's consumer key (refresh flow)"
    ),
    client_secret_env: str | None = typer.Option(
        None, "--client-secret-env", help="Salesforce: the variable holding the consumer secret"
    ),
    refresh_token_env: str | None = typer.Option(
        None, "--refresh-token-env", help="Salesforce: the variable holding the refresh token"
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="the API's base URL (Zendesk and Salesforce: your instance's)"
    ),
    objects: list[str] = typer.Option([], "--object", help="an object to pull (default: all)"),
    interval_s: float = typer.Option(900.0, "--interval", help="seconds between runs in serve"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Add a sync; its secrets are read from environment variables (never from argv) and
    stored encrypted. Salesforce's refresh flow: ``--client-id``, ``--client-secret-env`` and
    ``--refresh-token-env`` (``--credential-env`` optional); Zendesk API token: ``--email``."""
    from segflow.syncs.auth import Credential
    from segflow.syncs.store import SyncDefinition, open_store

    def secret(env: str | None, option: str) -> str | None:
        value = os.environ.get(env, "") if env else None
        if env and not value:
            raise typer.BadParameter(f"${env} is empty", param_hint=option)
        return value

    token = secret(credential_env, "--credential-env") or ""
    refresh_token = secret(refresh_token_env, "--refresh-token-env")
    if not token and not refresh_token:
        raise typer.BadParameter(
            "the API token's variable is required", param_hint="--credential-env"
        )
    credential = Credential(
        token=token, email=email, client_id=client_id,
        client_secret=secret(client_secret_env, "--client-secret-env"), refresh_token=refresh_token,
    )  # fmt: skip
    settings = resolve_settings(data_dir, config)
    store = open_store(settings.data_path, settings.activate.secrets_key)
    definition = SyncDefinition(
        name=name, vendor=vendor, source=source, base_url=base_url,
        objects=tuple(objects), interval_s=interval_s,
    )  # fmt: skip
    try:
        info = store.create(definition, credential)
    except SegflowError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()
    typer.echo(f"added sync {name} ({vendor} -> source {source}); credential {info.fingerprint}")


@sync_app.command("list")
def list_syncs(
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Every sync with its progress and last error."""
    from segflow.syncs.store import open_store

    settings = resolve_settings(data_dir, config)
    store = open_store(settings.data_path, settings.activate.secrets_key)
    try:
        found = store.list()
    finally:
        store.close()
    if as_json:
        render.emit_json(found)
        return
    rows = [
        {"name": i.definition.name, "vendor": i.definition.vendor, "source": i.definition.source,
         "state": i.progress.state, "objects": i.progress.total_objects,
         "last_success_ms": i.progress.last_success_ms, "last_error": i.progress.last_error}
        for i in found
    ]  # fmt: skip
    columns = ("name", "vendor", "source", "state", "objects", "last_success_ms", "last_error")
    render.rows(rows, columns, as_json=False)


@sync_app.command("run")
def run(
    names: list[str] = typer.Argument(None, help="the syncs to run (default: every sync)"),
    full: bool = typer.Option(False, "--full", help="from the start (stored events are skipped)"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Run syncs now, in this process; prints one JSON line per sync."""
    from segflow.catalog.db import catalog_target
    from segflow.collect.catalog import SourceCatalog
    from segflow.collect.ingest import Ingestor
    from segflow.log.drivers import open_event_log
    from segflow.privacy.compose import suppression_filter
    from segflow.syncs.runner import SyncRunner
    from segflow.syncs.store import open_store

    settings = resolve_settings(data_dir, config)
    store = open_store(settings.data_path, settings.activate.secrets_key)
    log = open_event_log(settings)
    catalog = SourceCatalog(catalog_target(settings))
    failed = False
    try:
        ingestor = Ingestor(log, catalog, settings.collect)
        ingestor.blocked = suppression_filter(settings).blocks_event  # docs/privacy.md
        runner = SyncRunner(store, ingestor, lock_dir=settings.data_path / "run")
        for name in names or store.names():
            try:
                result = runner.run(name, full=full)
            except SegflowError as exc:
                failed = True
                typer.echo(json.dumps({"sync": name, "error": exc.to_dict()}, default=str))
                continue
            typer.echo(json.dumps({"sync": name, **result.__dict__}))
    finally:
        log.close()
        catalog.close()
        store.close()
    if failed:
        raise typer.Exit(code=1)


@sync_app.command("remove")
def remove(
    name: str = SyncName,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Remove a sync, its cursors and its credential (the events it stored stay)."""
    from segflow.syncs.store import open_store

    settings = resolve_settings(data_dir, config)
    store = open_store(settings.data_path, settings.activate.secrets_key)
    try:
        store.remove(name)
    except SegflowError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()
    typer.echo(f"removed sync {name}")


def register(app: typer.Typer) -> None:
    from segflow.cli.sources import sources_app

    sources_app.add_typer(sync_app, name="sync")
