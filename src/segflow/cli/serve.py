"""``segflow serve``: run the server on one data directory."""

from __future__ import annotations

from pathlib import Path

import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings


def serve(
    data_dir: Path | None = DataDirOption,
    host: str | None = typer.Option(None, "--host", help="address to bind (default 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", help="port to bind (default 8080)"),
    config: Path | None = ConfigOption,
    log_level: str = typer.Option("warning", "--log-level"),
    http_server: str = typer.Option(
        "uvicorn", "--http-server", help="uvicorn (default) or granian"
    ),
) -> None:
    """Run segflow (collection API and every background part) on one data directory."""
    from segflow.server import compose
    from segflow.server.run import serve as run_server

    settings = resolve_settings(data_dir, config, host=host, port=port)
    run_server(
        settings,
        services=compose.services,
        mounts=compose.mounts,
        log_level=log_level,
        http_server=http_server,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
