"""``segflow tokens create|list|revoke``: API tokens (stored hashed in the catalog).

The same service as ``/api/v1/tokens`` and the console's Tokens page (``segflow.catalog.tokens``):
every create and revoke is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import typer

from segflow.catalog import tokens as service
from segflow.catalog.audit import AuditLog, cli_actor
from segflow.catalog.db import catalog_target
from segflow.catalog.tokens import TokenStore
from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import JsonOption, emit_json, rows
from segflow.errors import SegflowError

tokens_app = typer.Typer(
    help="API tokens for the admin API and the console. Roles: read (query), editor "
    "(segments, traits, destinations, models), admin (sources, tokens, deletion).",
    no_args_is_help=True,
)


@contextmanager
def _stores(data_dir: Path | None, config: Path | None) -> Iterator[tuple[TokenStore, AuditLog]]:
    catalog = catalog_target(resolve_settings(data_dir, config))
    store, audit = TokenStore(catalog), AuditLog(catalog)
    try:
        yield store, audit
    finally:
        store.close()
        audit.close()


def _fail(exc: SegflowError) -> typer.Exit:
    typer.echo(msgspec.json.encode(exc.to_dict()).decode(), err=True)
    return typer.Exit(code=2)


@tokens_app.command("create")
def create(
    role: str = typer.Option(..., "--role", help="read, editor or admin"),
    name: str = typer.Option("", "--name", help="a label to recognise the token by"),
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Create a token. It is printed once, as the last line (stored hashed, never shown again).

    Example: ``segflow tokens create --role read --name grafana``
    """
    with _stores(data_dir, config) as (store, audit):
        try:
            info, token = service.issue(store, audit, cli_actor(), {"role": role, "name": name})
        except SegflowError as exc:
            raise _fail(exc) from exc
    if as_json:
        emit_json({"token": token, "info": info})
        return
    article = "an" if role[:1] in ("a", "e", "i", "o", "u") else "a"
    typer.echo(f"created {article} {role} token {info.token_id} (shown once; stored hashed):")
    typer.echo(token)


@tokens_app.command("list")
def list_tokens(
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Every token: id, role, name, when it was created and revoked (never a secret)."""
    with _stores(data_dir, config) as (store, _):
        found = store.list()
    columns = ("token_id", "role", "name", "created_ms", "revoked_ms")
    rows(found, columns, as_json=as_json)


@tokens_app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="the id shown by `segflow tokens list`"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Revoke a token by id: the API refuses it at once and its console sessions end."""
    with _stores(data_dir, config) as (store, audit):
        try:
            service.revoke(store, audit, cli_actor(), token_id)
        except SegflowError as exc:
            raise _fail(exc) from exc
    typer.echo(f"revoked {token_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
