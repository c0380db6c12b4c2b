"""``segflow serve``: run the server on one data directory."""

from __future__ import annotations

from pathlib import Path

import msgspec
import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings


def serve(
    data_dir: Path | None = DataDirOption,
    host: str | None = typer.Option(None, "--host", help="address to bind (default 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", help="port to bind (default 8080)"),
    config: Path | None = ConfigOption,
    log_level: str | None = typer.Option(
        None, "--log-level", help="debug, info, warning, error (default: observability.log_level)"
    ),
    log_format: str | None = typer.Option(
        None, "--log-format", help="auto (JSON unless stderr is a terminal), json or text"
    ),
    http_server: str = typer.Option(
        "uvicorn", "--http-server", help="uvicorn (default) or granian"
    ),
    role: str | None = typer.Option(
        None,
        "--role",
        help="parts to run, comma-separated: collect, process, load, activate, api (default: all)",
    ),
) -> None:
    """Run segflow on one data directory: the collection API (/v1), the admin API (/api/v1, docs
    at /api/v1/docs), the web console (/console) and every background part (processor,
    warehouse loader, delivery, ML schedule). Stop with Ctrl-C."""
    from segflow.server import compose
    from segflow.server.roles import parse_roles
    from segflow.server.run import serve as run_server

    settings = resolve_settings(data_dir, config, host=host, port=port)
    if log_format is not None:
        settings = msgspec.structs.replace(
            settings,
            observability=msgspec.structs.replace(settings.observability, log_format=log_format),
        )
    if role is not None:
        roles = tuple(sorted(parse_roles(role)))
        settings = msgspec.structs.replace(
            settings, server=msgspec.structs.replace(settings.server, roles=roles)
        )
    run_server(
        settings,
        services=compose.services,
        mounts=compose.mounts,
        log_level=log_level,
        http_server=http_server,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
