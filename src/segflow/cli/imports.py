"""``segflow import FILE --source NAME``: historical events through the live ingestion path."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.errors import SegflowError


def import_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL, CSV or Parquet"),
    source: str = typer.Option(..., "--source", help="the source (see `segflow sources`)"),
    fmt: str | None = typer.Option(
        None, "--format", help="jsonl, csv or parquet (default: from the extension)"
    ),
    mapping: list[str] = typer.Option(
        [], "--mapping", help="FIELD=COLUMN[:conv], FIELD==LITERAL, or a preset (cdnow)"
    ),
    delimiter: str = typer.Option(
        ",", "--delimiter", help="CSV delimiter: a character, 'tab' or 'whitespace'"
    ),
    show_errors: int = typer.Option(20, "--show-errors", help="refused rows to list"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Import a file of historical events (validated, deduped and dead-lettered like live ones)."""
    from segflow.catalog.db import catalog_target
    from segflow.clock import WallClock
    from segflow.collect.catalog import SourceCatalog
    from segflow.collect.ingest import Ingestor
    from segflow.log.drivers import open_event_log
    from segflow.privacy.compose import suppression_filter
    from segflow.warehouse.importer import import_file
    from segflow.warehouse.readers import CDNOW_COLUMNS, detect_format, parse_mapping

    settings = resolve_settings(data_dir, config)
    preset_cdnow = mapping == ["cdnow"]
    log = open_event_log(settings)
    catalog = SourceCatalog(catalog_target(settings))
    console = Console(stderr=True)
    try:
        ingestor = Ingestor(log, catalog, settings.collect)
        ingestor.blocked = suppression_filter(settings).blocks_event  # docs/privacy.md
        src = ingestor.source(source)
        total = file.stat().st_size
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("rows", total=None if total else 0)
            info = import_file(
                file, ingestor, src, log.dead_letter, WallClock(),
                fmt="csv" if preset_cdnow else (fmt or detect_format(file)),
                mapping=parse_mapping(mapping) if mapping else None,
                delimiter="whitespace" if preset_cdnow else delimiter,
                columns=CDNOW_COLUMNS if preset_cdnow else None,
                progress=lambda n: bar.advance(task, n),
            )  # fmt: skip
    except SegflowError as exc:
        typer.echo(json.dumps(exc.to_dict(), default=str), err=True)
        raise typer.Exit(code=2) from exc
    finally:
        log.close()
        catalog.close()
    for err in info.errors[:show_errors]:
        console.print(f"line {err.line}: {err.field}: {err.reason}")
    typer.echo(
        json.dumps(
            {
                "rows": info.rows,
                "accepted": info.accepted,
                "duplicates": info.duplicates,
                "refused": info.refused,
            }
        )
    )
    if info.refused:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
