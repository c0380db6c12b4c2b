"""``segflow dead-letters list``: refused messages with the field and reason."""

from __future__ import annotations

from pathlib import Path

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.log.sqlite import read_dead_letters
from segflow.sqlite import connect

dead_letters_app = typer.Typer(
    help="Messages the collector refused, with the reason.", no_args_is_help=True
)


class DeadLetterRow(msgspec.Struct, kw_only=True):
    id: int
    source_id: str
    received_at_ms: int
    message_id: str | None
    field: str
    reason: str
    payload: str


@dead_letters_app.command("list")
def list_dead_letters(
    source: str | None = typer.Option(None, "--source", help="only this source id"),
    limit: int = typer.Option(50, "--limit"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="print one JSON array of the letters"),
) -> None:
    """The most recent dead letters, newest first (read-only: safe while the server runs)."""
    path = resolve_settings(data_dir, config).data_path / "log.sqlite"
    if not path.exists():
        typer.echo("[]" if as_json else "no log yet")
        return
    con = connect(path, read_only=True)
    try:
        found = read_dead_letters(con, source_id=source, limit=limit)
    finally:
        con.close()
    letters = [
        DeadLetterRow(
            id=d.id or 0,
            source_id=d.source_id,
            received_at_ms=d.received_at_ms,
            message_id=d.message_id,
            field=d.field,
            reason=d.reason,
            payload=d.payload[:2000].decode("utf-8", "replace"),
        )
        for d in found
    ]
    if as_json:
        typer.echo(msgspec.json.encode(letters).decode())
        return
    table = Table("id", "source", "messageId", "field", "reason")
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.source_id,
            letter.message_id or "-",
            letter.field or "-",
            letter.reason[:120],
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(dead_letters_app, name="dead-letters")
