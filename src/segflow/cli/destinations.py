"""``segflow destinations list|show|create|update|delete|subscribe|unsubscribe|test|rotate-secret|snapshot``.

Works on ``DATA_DIR/delivery.sqlite`` (safe while ``segflow serve`` runs: SQLite WAL).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import typer

from segflow.activate.service import ActivationService
from segflow.cli.render import JsonOption, record
from segflow.errors import SegflowError

app = typer.Typer(
    help="Destinations: where membership changes are delivered.", no_args_is_help=True
)
DataDir = typer.Option(None, "--data-dir", help="segflow data directory (default: settings)")


def service(data_dir: Path | None) -> ActivationService:
    """The activation service on the data directory, with the configured SSRF allow-list."""
    from segflow.config import load_settings
    from segflow.log.drivers import open_event_log
    from segflow.stream.compose import build_reader

    settings = load_settings()
    if data_dir is not None:
        settings = load_settings(overrides={"server": {"data_dir": str(data_dir)}})
    root = settings.data_path
    log = open_event_log(settings)
    return ActivationService.open(
        root,
        allow_list=settings.activate.allow_list,
        secrets_key=settings.activate.secrets_key,
        export_root=settings.activate.export_root,
        secret_overlap_ms=settings.activate.secret_overlap_ms,
        lookup=build_reader(settings, log),  # members and traits for --initial-sync
    )


def emit(data: Any) -> None:
    typer.echo(json.dumps(msgspec.to_builtins(data), indent=2, default=str))


def fail(exc: SegflowError) -> typer.Exit:
    typer.echo(json.dumps(exc.to_dict()), err=True)
    return typer.Exit(code=2)


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command("list")
def list_(data_dir: Path | None = DataDir, as_json: bool = JsonOption) -> None:
    """Every destination with its delivery counts (JSON, with or without --json)."""
    svc = service(data_dir)
    emit([{"destination": d, "stats": svc.store.stats(d.name)} for d in svc.list_destinations()])


@app.command()
def show(name: str, data_dir: Path | None = DataDir, as_json: bool = JsonOption) -> None:
    """A destination, its subscriptions, delivery stats, secrets (prefixes) and notices."""
    try:
        record(service(data_dir).show(name), as_json=as_json)
    except SegflowError as exc:
        raise fail(exc) from exc


@app.command()
def create(
    name: str,
    url: str | None = typer.Option(None, help="webhook URL"),
    directory: str | None = typer.Option(None, help="directory of a file destination"),
    option: list[str] = typer.Option(
        [], "--set", help="KEY=VALUE (e.g. batch_max=100, identifiers=hashed)"
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Create a destination; prints its signing secret once."""
    spec: dict[str, Any] = {"name": name, **_options(option)}
    if directory:
        spec.update(kind="file", directory=directory)
    if url:
        spec["url"] = url
    try:
        dest, secret = service(data_dir).create_destination(spec)
    except SegflowError as exc:
        raise fail(exc) from exc
    emit({"destination": dest, "secret": secret})


@app.command()
def update(
    name: str,
    option: list[str] = typer.Option([], "--set", help="KEY=VALUE; enabled=true re-enables"),
    resync: bool = typer.Option(False, help="send the current members again"),
    data_dir: Path | None = DataDir,
) -> None:
    """Change a destination."""
    try:
        emit(service(data_dir).update_destination(name, _options(option), resync=resync))
    except SegflowError as exc:
        raise fail(exc) from exc


@app.command()
def delete(name: str, data_dir: Path | None = DataDir) -> None:
    """Delete a destination and its queue."""
    try:
        service(data_dir).delete_destination(name)
    except SegflowError as exc:
        raise fail(exc) from exc
    emit({"deleted": name})


@app.command()
def subscribe(
    name: str,
    segment: str,
    kinds: list[str] = typer.Option(["entered", "exited"], "--kind"),
    traits: list[str] = typer.Option([], "--trait"),
    initial_sync: bool = typer.Option(False, "--initial-sync"),
    data_dir: Path | None = DataDir,
) -> None:
    """Connect a destination to a segment."""
    try:
        sub, queued = service(data_dir).subscribe(
            name, segment, kinds=kinds, traits=traits, initial_sync=initial_sync
        )
    except SegflowError as exc:
        raise fail(exc) from exc
    emit({"subscription": sub, "queued": queued})


@app.command()
def unsubscribe(name: str, segment: str, data_dir: Path | None = DataDir) -> None:
    """Disconnect a destination from a segment."""
    emit({"deleted": service(data_dir).unsubscribe(name, segment)})


@app.command()
def test(name: str, data_dir: Path | None = DataDir) -> None:
    """Send a synthetic change now and show the answer."""
    try:
        emit(asyncio.run(service(data_dir).test_send(name)))
    except SegflowError as exc:
        raise fail(exc) from exc


@app.command("rotate-secret")
def rotate_secret(name: str, data_dir: Path | None = DataDir) -> None:
    """A new signing secret; the old one keeps signing during the overlap."""
    try:
        emit({"secret": service(data_dir).rotate_secret(name)})
    except SegflowError as exc:
        raise fail(exc) from exc


@app.command()
def snapshot(name: str, segment: str, data_dir: Path | None = DataDir) -> None:
    """Write the current members of a segment to a file destination (Parquet and CSV)."""
    try:
        paths = service(data_dir).snapshot(name, segment)
    except SegflowError as exc:
        raise fail(exc) from exc
    emit({"written": paths})


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="destinations")
