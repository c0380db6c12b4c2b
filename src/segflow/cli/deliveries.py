"""``segflow deliveries list|dead-letters|replay``: the delivery log of a destination."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from segflow.cli.destinations import DataDir, emit, fail, service
from segflow.cli.render import JsonOption, record
from segflow.errors import SegflowError, ValidationError

app = typer.Typer(help="The delivery log, dead letters and replays.", no_args_is_help=True)


def since_ms(since: str | None) -> int:
    """``--since`` as epoch ms: an ISO date/time or epoch milliseconds.

    >>> since_ms("1970-01-01T00:00:01+00:00"), since_ms("5"), since_ms(None)
    (1000, 5, 0)
    """
    if not since:
        return 0
    if since.isdigit():
        return int(since)
    try:
        return int(datetime.fromisoformat(since).timestamp() * 1000)
    except ValueError as exc:
        raise ValidationError("since", "an ISO date/time or epoch milliseconds") from exc


@app.command("list")
def list_(
    destination: str = typer.Option(..., "--destination"),
    status: str | None = typer.Option(None, help="pending, delivered, dead"),
    limit: int = typer.Option(50),
    data_dir: Path | None = DataDir,
    as_json: bool = JsonOption,
) -> None:
    """Recent deliveries with every attempt (status, latency, next retry)."""
    try:
        record(
            service(data_dir).deliveries(destination, status=status, limit=limit), as_json=as_json
        )
    except SegflowError as exc:
        raise fail(exc) from exc


@app.command("dead-letters")
def dead_letters(
    destination: str = typer.Option(..., "--destination"),
    since: str | None = typer.Option(None, "--since"),
    limit: int = typer.Option(50),
    data_dir: Path | None = DataDir,
    as_json: bool = JsonOption,
) -> None:
    """Changes that were given up on, with every attempt."""
    try:
        found = service(data_dir).dead_letters(destination, since_ms=since_ms(since), limit=limit)
        record(found, as_json=as_json)
    except SegflowError as exc:
        raise fail(exc) from exc


@app.command()
def replay(
    destination: str = typer.Option(..., "--destination"),
    since: str | None = typer.Option(None, "--since", help="dead since (ISO or epoch ms)"),
    data_dir: Path | None = DataDir,
) -> None:
    """Put dead letters back in the queue (same webhook-id, a fresh horizon); those a later
    delivered change of their segment superseded are skipped."""
    try:
        emit(service(data_dir).replay(destination, since_ms=since_ms(since)))
    except SegflowError as exc:
        raise fail(exc) from exc


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="deliveries")
