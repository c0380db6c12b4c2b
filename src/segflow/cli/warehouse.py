"""``segflow sql``, ``segflow export``, ``segflow features``: the warehouse from the shell.

Each opens ``DATA_DIR/warehouse.duckdb`` itself; while ``segflow serve`` runs, its loader
holds the file only during a micro-batch, so these wait for the lock (``--timeout``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import counting, working
from segflow.errors import SegflowError


def _fail(exc: SegflowError) -> typer.Exit:
    typer.echo(json.dumps(exc.to_dict(), default=str), err=True)
    return typer.Exit(code=2)


def _path(data_dir: Path | None, config: Path | None) -> Path:
    from segflow.warehouse.connection import warehouse_path

    return warehouse_path(resolve_settings(data_dir, config).data_path)


def sql(
    query: str = typer.Argument(..., help="SQL to run on the warehouse (DuckDB dialect)"),
    fmt: str = typer.Option("table", "--format", help="table, csv or json (JSON lines)"),
    write: bool = typer.Option(False, "--write", help="open read-write (default: read-only)"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the file's lock"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Run SQL on the warehouse and print the rows."""
    from segflow.warehouse.connection import open_warehouse
    from segflow.warehouse.query import run_query, to_csv, to_json_lines

    try:
        with open_warehouse(_path(data_dir, config), read_only=not write, timeout_s=timeout) as con:
            table = run_query(con, query)
    except SegflowError as exc:
        raise _fail(exc) from exc
    if fmt == "csv":
        typer.echo(to_csv(table), nl=False)
    elif fmt == "json":
        typer.echo(to_json_lines(table), nl=False)
    else:
        out = Table(*table.column_names)
        for row in table.to_pylist():
            out.add_row(*("" if v is None else str(v) for v in row.values()))
        Console().print(out)


def export(
    table_or_query: str = typer.Argument(..., help="a table/view name or a SELECT"),
    out: Path = typer.Argument(..., help="the Parquet file to write"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the file's lock"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Export a table or a query's rows to Parquet."""
    from segflow.warehouse.connection import open_warehouse
    from segflow.warehouse.query import export_parquet

    try:
        with (
            working(f"exporting to {out}"),
            open_warehouse(_path(data_dir, config), read_only=True, timeout_s=timeout) as con,
        ):
            info = export_parquet(con, table_or_query, out)
    except SegflowError as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {info.rows} rows to {info.path}")


def features(
    at: str | None = typer.Option(None, "--at", help="YYYY-MM-DD or ISO time, UTC (default: now)"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the file's lock"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Compute the features table as of a time (point in time correct)."""
    from segflow.warehouse.connection import open_warehouse
    from segflow.warehouse.features import compute_features

    settings = resolve_settings(data_dir, config)
    at_ms = _parse_at(at)
    try:
        with (
            working("computing features"),
            open_warehouse(_path(data_dir, config), timeout_s=timeout) as con,
        ):
            info = compute_features(con, at_ms, settings.warehouse)
    except SegflowError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"features: {info.profiles} profiles as of {_iso(at_ms)} in {info.duration_ms / 1000:.2f}s"
    )
    typer.echo("columns: " + ", ".join(info.columns[1:]))


def load(
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Load the log (and the processor's changes) into the warehouse until caught up (when
    `segflow serve` is not running; run `segflow process --until-idle` first for profiles)."""
    from segflow.clock import WallClock
    from segflow.log.drivers import open_event_log
    from segflow.stream.compose import open_state_reader, state_path
    from segflow.stream.outbox import StateChangeFeed
    from segflow.warehouse.loader import WarehouseLoader

    settings = resolve_settings(data_dir, config)
    log = open_event_log(settings)
    feed = None
    if settings.shared.dsn or state_path(settings).exists():  # identities, merges, memberships
        feed = StateChangeFeed(open_state_reader(settings))
    try:
        loader = WarehouseLoader(
            log, feed, _path(data_dir, config), WallClock(), settings.warehouse
        )
        infos = []
        with counting("loading the warehouse", "events") as advance:
            while not (info := loader.run_once()).empty:
                infos.append(info)
                advance(info.events_loaded)
    except SegflowError as exc:
        raise _fail(exc) from exc
    finally:
        log.close()
        if feed is not None:
            feed.reader.close()
    typer.echo(f"loaded {sum(i.events_loaded for i in infos)} events in {len(infos)} batches")


def _parse_at(at: str | None) -> int:
    if at is None:
        return int(datetime.now(UTC).timestamp() * 1000)
    try:
        dt = datetime.fromisoformat(at)
    except ValueError as exc:
        raise typer.BadParameter(f"not a date: {at!r}", param_hint="--at") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def register(app: typer.Typer) -> None:
    app.command("sql")(sql)
    app.command("export")(export)
    app.command("features")(features)
    app.command("load")(load)
