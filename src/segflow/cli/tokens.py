"""``segflow tokens create|list|revoke``: API tokens (stored hashed in ``catalog.sqlite``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from segflow.api.auth import ROLES, TokenStore
from segflow.audit import AuditLog, cli_actor
from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings

tokens_app = typer.Typer(help="API tokens (roles: read, editor, admin).", no_args_is_help=True)


def _audit(
    data_dir: Path | None, config: Path | None, action: str, target: str, after: Any
) -> None:
    log = AuditLog(resolve_settings(data_dir, config).data_path / "catalog.sqlite")
    try:
        log.record(cli_actor(), action, target, None, after)
    finally:
        log.close()


def _store(data_dir: Path | None, config: Path | None) -> TokenStore:
    return TokenStore(resolve_settings(data_dir, config).data_path / "catalog.sqlite")


@tokens_app.command("create")
def create(
    role: str = typer.Option(..., "--role", help="read, editor or admin"),
    name: str = typer.Option("", "--name", help="a label to recognise the token by"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Create a token; it is printed once, as the last line."""
    if role not in ROLES:
        typer.echo(f"--role must be one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(code=2)
    store = _store(data_dir, config)
    token = store.create(role, name=name)
    _audit(data_dir, config, "token.create", token.split("_")[1], {"role": role, "name": name})
    typer.echo(f"created a {role} token (shown once; stored hashed):")
    typer.echo(token)


@tokens_app.command("list")
def list_tokens(data_dir: Path | None = DataDirOption, config: Path | None = ConfigOption) -> None:
    """List tokens (ids, roles, names; never secrets)."""
    store = _store(data_dir, config)
    for info in store.list():
        state = "revoked" if info.revoked_ms else "active"
        typer.echo(f"{info.token_id}\t{info.role}\t{state}\t{info.name}")


@tokens_app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="the id shown by `tokens list`"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Revoke a token by id."""
    store = _store(data_dir, config)
    if not store.revoke(token_id):
        typer.echo(f"no active token {token_id}", err=True)
        raise typer.Exit(code=1)
    _audit(data_dir, config, "token.revoke", token_id, None)
    typer.echo(f"revoked {token_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
