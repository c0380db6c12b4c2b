"""``segflow ltv fit``, ``segflow models list|show|rename-cluster|save-cluster``, ``segflow train``, ``segflow cluster``.

Jobs open the warehouse (``DATA_DIR/warehouse.duckdb``) themselves: run them when ``segflow
serve`` is not holding the file (it runs the same jobs on its own schedule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from segflow.catalogdb import CatalogTarget
from segflow.cli.render import JsonOption, record
from segflow.clock import Clock, ManualClock, WallClock
from segflow.errors import SegflowError

ltv_app = typer.Typer(help="Predicted lifetime value (BG/NBD + Gamma-Gamma).", no_args_is_help=True)
models_app = typer.Typer(
    help="The model registry: definitions and job results.", no_args_is_help=True
)
ModelName = typer.Argument(..., help="the model's name (see `segflow models list`)")
DataDir = typer.Option(
    None, "--data-dir", help="segflow data directory (default: settings server.data_dir)"
)


def _warehouse(data_dir: Path | None) -> duckdb.DuckDBPyConnection:
    """The data directory's warehouse (waits while another process holds the file)."""
    from segflow.config import load_settings
    from segflow.warehouse.connection import connect, warehouse_path

    return connect(warehouse_path(data_dir or load_settings().data_path))


def _fail(exc: SegflowError) -> typer.Exit:
    typer.echo(json.dumps(exc.to_dict()), err=True)
    return typer.Exit(code=2)


@ltv_app.command("fit")
def ltv_fit(
    transactions: Path = typer.Argument(
        ..., help="CSV, TSV, whitespace-separated text, Parquet or JSON lines"
    ),
    customer_col: str = typer.Option(..., "--customer-col", help="the column naming the customer"),
    date_col: str = typer.Option(..., "--date-col", help="the column holding the purchase date"),
    amount_col: str | None = typer.Option(
        None, "--amount-col", help="the column holding the amount (for Gamma-Gamma spend)"
    ),
    calibration_end: str = typer.Option(..., "--calibration-end", help="YYYY-MM-DD, inclusive"),
    holdout_end: str | None = typer.Option(
        None, "--holdout-end", help="default: the last date in the file"
    ),
    time_unit: str = typer.Option("weeks", "--time-unit", help="days, weeks or months"),
    date_format: str = typer.Option(
        "auto", "--date-format", help="auto, yyyymmdd, epoch_ms or iso"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Fit BG/NBD and Gamma-Gamma to a transaction file; compare with the holdout if there is one."""
    from segflow.ml.lifetime import fit_summary
    from segflow.ml.transactions import load_transactions, summarise

    con = duckdb.connect()
    try:
        table = load_transactions(con, transactions)
        summary = summarise(con, table, customer_col, date_col, amount_col, calibration_end=calibration_end,
                            holdout_end=holdout_end, time_unit=time_unit, date_format=date_format)  # fmt: skip
        result = fit_summary(summary).to_dict()
    except SegflowError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_ltv(Console(), result)


def _print_ltv(console: Console, result: dict[str, Any]) -> None:
    """The fit as people read it: parameters, log-likelihoods, the holdout comparison."""
    unit, customers, ll = result["time_unit"], result["customers"], result["log_likelihood"]

    def params(values: dict[str, float]) -> str:
        return "  ".join(f"{k} = {v:.4f}" for k, v in values.items())

    console.print(f"BG/NBD ({customers['calibration']:,} customers, time in {unit})")
    console.print(f"  {params(result['bgnbd'])}   log-likelihood {ll['bgnbd']:.4f}")
    if result["gamma_gamma"]:
        console.print(f"Gamma-Gamma ({customers['repeat']:,} customers with repeat purchases)")
        console.print(f"  {params(result['gamma_gamma'])}   log-likelihood {ll['gamma_gamma']:.4f}")
    holdout = result["holdout"]
    if not holdout:
        console.print("no holdout: the file ends at the calibration end")
        return
    error = holdout["error_pct"]
    console.print(
        f"Holdout ({holdout['length']:g} {unit}): predicted {holdout['predicted_repeat_purchases']:,.2f}"
        f" repeat purchases, actual {holdout['actual_repeat_purchases']:,}"
        + (f" ({error:+.2f}%)" if error is not None else "")
    )
    table = Table("purchases in calibration", "customers", "actual mean", "predicted mean")
    for row in holdout["by_calibration_frequency"]:
        table.add_row(row["x"], f"{row['customers']:,}", f"{row['actual_mean']:.3f}",
                      f"{row['predicted_mean']:.3f}")  # fmt: skip
    console.print(table)


@models_app.command("list")
def models_list(data_dir: Path | None = DataDir, as_json: bool = JsonOption) -> None:
    """Every model with its last run."""
    from segflow.ml.registry import Registry

    registry = Registry(_warehouse(data_dir))
    rows: list[dict[str, Any]] = []
    for spec in registry.list_models():
        last = registry.runs(spec.name, limit=1)
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "target": spec.target,
                "last_run": msgspec.to_builtins(last[0]) if last else None,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "kind", "target", "last run", "status", "duration ms")
    for row in rows:
        info: dict[str, Any] = row["last_run"] or {}
        table.add_row(
            row["name"],
            row["kind"],
            row["target"] or "",
            info.get("run_id", "-"),
            info.get("status", "-"),
            str(info.get("duration_ms", "")),
        )
    Console().print(table)


@models_app.command("show")
def models_show(
    name: str = ModelName,
    data_dir: Path | None = DataDir,
    runs: int = typer.Option(5, "--runs", help="how many recent runs to include"),
    as_json: bool = JsonOption,
) -> None:
    """A model's definition and its latest job results (metrics, errors)."""
    from segflow.ml.registry import Registry

    registry = Registry(_warehouse(data_dir))
    try:
        spec = registry.get_model(name)
    except SegflowError as exc:
        raise _fail(exc) from exc
    out: dict[str, Any] = {
        "model": msgspec.to_builtins(spec),
        "warning": registry.training_warning(name),
        "runs": [msgspec.to_builtins(r) for r in registry.runs(name, runs)],
    }
    if spec.kind == "cluster":
        out["clusters"] = {str(c): n for c, (n, _) in registry.cluster_names(name).items()}
    record(out, as_json=as_json)


@models_app.command("rename-cluster")
def rename_cluster(
    name: str = ModelName,
    cluster: int = typer.Argument(..., help="the cluster's number (see `models show`)"),
    new_name: str = typer.Argument(..., help="what people should call it"),
    data_dir: Path | None = DataDir,
) -> None:
    """Rename a discovered cluster (the name survives retrains; segments saved from it keep
    their members, they refer to its id). Rules written on the old name are listed."""
    from segflow.ml.registry import Registry
    from segflow.ml.segments import rules_naming_cluster

    root = data_dir or _default_dir()
    try:
        before = Registry(_warehouse(root)).rename_cluster(name, cluster, new_name)
    except SegflowError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{name}/{cluster}: {before} -> {new_name}")
    for segment in rules_naming_cluster(_catalog(data_dir), name, before):
        typer.echo(f"warning: segment {segment} names the cluster {before!r}", err=True)


@models_app.command("save-cluster")
def save_cluster(
    name: str = ModelName,
    cluster: int = typer.Argument(..., help="the cluster's number (see `models show`)"),
    segment: str = typer.Option(..., "--segment", help="the new segment's name"),
    data_dir: Path | None = DataDir,
) -> None:
    """Save a cluster as a segment (a rule on the cluster label) in the catalog."""
    from segflow.ml.registry import Registry
    from segflow.ml.segments import save_cluster_as_segment

    root = data_dir or _default_dir()
    try:
        definition = save_cluster_as_segment(
            Registry(_warehouse(root)), _catalog(data_dir), name, cluster, segment
        )
    except SegflowError as exc:
        raise _fail(exc) from exc
    typer.echo(f"segment {segment} v{definition.version}: {definition.rule}")


def _catalog(data_dir: Path | None) -> CatalogTarget:
    """The catalog of these settings: ``catalog.sqlite`` or the shared one (``shared.dsn``)."""
    from segflow.catalogdb import catalog_target
    from segflow.cli.options import resolve_settings

    return catalog_target(resolve_settings(data_dir, None))


def _default_dir() -> Path:
    from segflow.config import load_settings

    return load_settings().data_path


AsOf = typer.Option(
    None, "--as-of-ms", help="run as of this epoch-ms time (replays, backfills); default now"
)


def _run(name: str, job: str | None, data_dir: Path | None, as_of_ms: int | None) -> None:
    from segflow.ml.jobs import JobContext, run_job

    con = _warehouse(data_dir)
    clock: Clock = WallClock() if as_of_ms is None else ManualClock(as_of_ms)
    with Progress(transient=True) as bar:
        task = bar.add_task(f"{name}", total=1.0)
        ctx = JobContext(
            con=con,
            clock=clock,
            progress=lambda step, f: bar.update(task, completed=f, description=f"{name}: {step}"),
        )
        try:
            run = run_job(ctx, name, job)
        except SegflowError as exc:
            raise _fail(exc) from exc
    summary = {
        k: v
        for k, v in run.metrics.items()
        if k not in ("projection", "calibration", "backtest", "scoring")
    }
    if run.metrics.get("warning"):
        typer.echo(f"warning: {run.metrics['warning']}", err=True)
    typer.echo(
        json.dumps(
            {
                "run_id": run.run_id,
                "status": run.status,
                "duration_ms": run.duration_ms,
                "metrics": summary,
            },
            indent=2,
            default=str,
        )
    )


def train_cmd(
    name: str = ModelName, data_dir: Path | None = DataDir, as_of_ms: int | None = AsOf
) -> None:
    """Train (then score) a propensity model, or fit an LTV model, now."""
    _run(name, None, data_dir, as_of_ms)


def cluster_cmd(
    name: str = typer.Argument("customer_segments", help="a cluster model's name"),
    data_dir: Path | None = DataDir,
    as_of_ms: int | None = AsOf,
) -> None:
    """Re-discover the clusters of a cluster model now."""
    _run(name, "cluster", data_dir, as_of_ms)


def score_cmd(
    name: str = ModelName, data_dir: Path | None = DataDir, as_of_ms: int | None = AsOf
) -> None:
    """Rescore every profile with the latest trained propensity model."""
    _run(name, "score", data_dir, as_of_ms)


def register(app: typer.Typer) -> None:
    """Wire the ML commands into the ``segflow`` app."""
    app.add_typer(ltv_app, name="ltv")
    app.add_typer(models_app, name="models")
    app.command("train")(train_cmd)
    app.command("cluster")(cluster_cmd)
    app.command("score")(score_cmd)
