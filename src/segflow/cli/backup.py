"""``segflow backup`` and ``segflow restore``: a consistent copy of a data directory.

``segflow backup --data-dir DIR OUT`` works while ``segflow serve`` runs on DIR: it holds the
warehouse between two loader micro-batches, pins every SQLite store at one instant and copies
them (docs/operations.md). With ``--url`` and ``--token`` (an admin token) it asks the
running server to write the backup instead (``POST /api/v1/backups``): needed when the
server never releases the warehouse (``warehouse.release_between_batches = false``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.errors import SegflowError


def _fail(exc: SegflowError) -> typer.Exit:
    typer.echo(json.dumps(exc.to_dict(), default=str), err=True)
    return typer.Exit(code=2)


def _summary(manifest: dict[str, Any], out: Path) -> str:
    files = manifest.get("files") or []
    total = sum(int(f["bytes"]) for f in files)
    return f"backup written to {out}: {len(files)} files, {total:,} bytes"


def backup(
    out: Path = typer.Argument(..., help="a new (or empty) directory for the backup"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
    url: str | None = typer.Option(None, "--url", help="ask the server at URL to write it"),
    token: str | None = typer.Option(
        None, "--token", envvar="SEGFLOW_TOKEN", help="an admin API token (with --url)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the manifest"),
) -> None:
    """Back up a data directory, consistently, while segflow runs."""
    from segflow.backup import create_backup

    if url is not None:
        manifest = _remote(url, token, out)
    else:
        settings = resolve_settings(data_dir, config)
        try:
            made = create_backup(
                settings.data_path, out, lock_timeout_s=settings.warehouse.lock_timeout_s
            )
        except SegflowError as exc:
            raise _fail(exc) from exc
        manifest = msgspec.to_builtins(made)
    typer.echo(json.dumps(manifest, indent=2) if as_json else _summary(manifest, out))


def _remote(url: str, token: str | None, out: Path) -> dict[str, Any]:
    import httpx

    if not token:
        typer.echo("--url needs --token (an admin API token)", err=True)
        raise typer.Exit(code=2)
    answer = httpx.post(
        url.rstrip("/") + "/api/v1/backups",
        json={"path": str(out.resolve())},
        headers={"Authorization": f"Bearer {token}"},
        timeout=None,
    )
    if answer.status_code != 201:
        typer.echo(answer.text, err=True)
        raise typer.Exit(code=2)
    result: dict[str, Any] = answer.json()
    return result


def restore(
    source: Path = typer.Argument(..., help="a backup directory (with manifest.json)"),
    data_dir: Path = typer.Option(..., "--data-dir", help="the directory to restore into"),
    force: bool = typer.Option(
        False, "--force", help="replace segflow's files in a non-empty directory"
    ),
) -> None:
    """Restore a backup into an empty data directory (stop segflow first)."""
    from segflow.backup import restore_backup

    try:
        manifest = restore_backup(source, data_dir, force=force)
    except SegflowError as exc:
        raise _fail(exc) from exc
    typer.echo(f"restored {len(manifest.files)} files into {data_dir} (checksums verified)")


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
