"""``segflow serve``: run the server on one data directory (docs/serve.md)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.config import Settings
from segflow.errors import ConfigError


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
        "uvicorn", "--http-server", help="uvicorn (default) or granian (implies --single-process)"
    ),
    role: str | None = typer.Option(
        None,
        "--role",
        help="parts to run, comma-separated: collect, process, load, activate, api "
        "(default: all; implies --single-process)",
    ),
    workers: str | None = typer.Option(
        None,
        "--workers",
        help="HTTP worker processes under the supervisor: auto (cores - 1) or a number "
        "(default: server.workers)",
    ),
    api_port: int | None = typer.Option(
        None,
        "--api-port",
        help="serve the admin API and the console on this port, in processes of their own "
        "(the port then serves collection only; default: server.api_port, none)",
    ),
    api_workers: int | None = typer.Option(
        None, "--api-workers", help="API worker processes with --api-port (default 1)"
    ),
    single_process: bool = typer.Option(
        False, "--single-process", help="run every part as threads of this one process"
    ),
    fd: int | None = typer.Option(None, "--fd", hidden=True, help="a listening socket to serve"),
) -> None:
    """Run segflow on one data directory: the collection API (/v1), the admin API (/api/v1, docs
    at /api/v1/docs), the web console (/console) and every background part (processor,
    warehouse loader, delivery, ML schedule). By default a supervisor runs them as processes
    sized to the machine; --single-process runs them in this one. Stop with Ctrl-C."""
    settings = resolve_settings(data_dir, config, host=host, port=port)
    if log_format is not None:
        settings = msgspec.structs.replace(
            settings,
            observability=msgspec.structs.replace(settings.observability, log_format=log_format),
        )
    if role is not None:
        settings = _with_server(settings, roles=_roles(role))
    if workers is not None:
        settings = _with_server(settings, workers=workers)
    if api_port is not None:
        settings = _with_server(settings, api_port=api_port)
    if api_workers is not None:
        settings = _with_server(settings, api_workers=api_workers)
    if _supervised(settings, single_process, role, http_server):
        _supervise(settings, config=config, log_level=log_level, log_format=log_format)
        return
    for flag, value in (("--workers", workers), ("--api-port", api_port),
                        ("--api-workers", api_workers)):  # fmt: skip
        if value is not None:
            raise ConfigError(f"{flag} needs the supervised mode (no --single-process or --role)")
    _single_process(settings, log_level=log_level, http_server=http_server, fd=fd)


def _roles(value: str) -> tuple[str, ...]:
    from segflow.server.roles import parse_roles

    return tuple(sorted(parse_roles(value)))


def _with_server(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, **changes)
    )


def _supervised(settings: Settings, single_process: bool, role: str | None, http: str) -> bool:
    """The supervisor runs unless asked for one process, for some roles (a role-split
    deployment already is processes: ``--role`` or ``server.roles``) or for granian (which has
    its own workers)."""
    from segflow.server.roles import ROLES, parse_roles

    all_roles = parse_roles(settings.server.roles) == frozenset(ROLES)
    return not single_process and role is None and all_roles and http == "uvicorn"


def _supervise(
    settings: Settings, *, config: Path | None, log_level: str | None, log_format: str | None
) -> None:
    from segflow.server.supervisor import resolve_workers, supervise

    extra: list[str] = []
    if config is not None:
        extra += ["--config", str(config.resolve())]
    if log_level is not None:
        extra += ["--log-level", log_level]
    if log_format is not None:
        extra += ["--log-format", log_format]
    workers = resolve_workers(settings.server.workers)
    raise typer.Exit(supervise(settings, workers=workers, extra=extra, log_level=log_level))


def _single_process(
    settings: Settings, *, log_level: str | None, http_server: str, fd: int | None
) -> None:
    from segflow.server import compose
    from segflow.server.run import serve as run_server

    run_server(
        settings,
        parts=compose.assemble,
        log_level=log_level,
        http_server=http_server,
        listen_fd=fd,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
