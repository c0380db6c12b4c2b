"""``segflow demo``: segflow on its embedded defaults, driven by a simulated shop (``make demo``)."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer


def demo(
    data_dir: Path = typer.Option(
        Path("demo-data"), "--data-dir", help="where the demo keeps its data (wiped at start)"
    ),
    port: int = typer.Option(8080, "--port", help="port to serve on (another if it is taken)"),
    rate: float = typer.Option(20.0, "--rate", help="live traffic, events per second"),
    people: int = typer.Option(2000, "--people", help="simulated people"),
    days: int = typer.Option(42, "--days", help="days of history sent as the backfill"),
    seed: int = typer.Option(42, "--seed", help="the simulator's seed (same seed, same shop)"),
    duration: float | None = typer.Option(
        None, "--duration", help="seconds of live traffic, then stop (default: until Ctrl-C)"
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="do not open a browser"),
) -> None:
    """Run segflow with live simulated traffic and tell the mission's story (see README)."""
    from segflow.demo.run import DemoOptions, running

    options = DemoOptions(
        data_dir=data_dir.resolve(),
        port=port,
        people=people,
        days=days,
        rate=rate,
        seed=seed,
        duration_s=duration,
        open_browser=not no_browser,
    )
    with running(options) as runner:
        try:
            runner.on_ready = (lambda url: webbrowser.open(url)) if options.open_browser else None
            result = runner.run()
        except KeyboardInterrupt:
            typer.echo("stopping")
            return
    typer.echo(f"events sent: {result.events_sent}; webhooks received: {len(result.webhooks)}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
