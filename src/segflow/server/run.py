"""Running the serve process on one data directory, under uvicorn (default) or granian.

The collector is a plain ASGI app, so any ASGI server runs it. ``benchmarks/ingest.py
--granian`` measures both (BENCHMARKS.md): granian's Rust HTTP layer accepts batches faster;
uvicorn (uvloop + httptools) stays the default because it runs in this process, which keeps
signals, SIGKILL crash semantics and in-process services simple; ``--http-server granian``
(``pip install 'segflow[granian]'``) is there for throughput.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Protocol

import msgspec
import uvicorn

from segflow.collect.asgi import ASGIApp
from segflow.config import Settings
from segflow.errors import ConfigError
from segflow.server.app import build_app
from segflow.server.listener import bind_listener, check_port, inherited
from segflow.server.roles import HTTP_ROLES, parse_roles
from segflow.server.services import Service, ServiceGroup
from segflow.serving.runtime import Runtime
from segflow.telemetry.logs import configure_logging


class Parts(Protocol):
    """What a serve process runs besides the collector: background services, and ASGI apps
    mounted by path prefix (``segflow.server.compose.Assembly``)."""

    services: list[Service]
    mounts: dict[str, ASGIApp]


PartsFactory = Callable[[Runtime], Parts]  # called once per process: compose.assemble
logger = logging.getLogger("segflow.server")


def serve(
    settings: Settings,
    *,
    parts: PartsFactory | None = None,
    log_level: str | None = None,
    http_server: str = "uvicorn",
    listen_fd: int | None = None,
) -> None:
    """Open the data directory, build the app and serve until interrupted (SIGINT/SIGTERM).

    Logs go to stderr as ``observability`` says (JSON lines unless stderr is a terminal);
    ``log_level`` overrides ``observability.log_level``. A process whose roles need no HTTP
    (``--role process,load,activate``) runs its services without opening a port. The port is
    bound before the data directory is opened (a busy port raises
    :class:`~segflow.server.exceptions.PortInUse` and touches nothing); ``listen_fd`` is a
    socket already listening, passed down by the supervisor (:mod:`segflow.server.supervisor`)."""
    log_level = (log_level or settings.observability.log_level).lower()
    if not parse_roles(settings.server.roles) & HTTP_ROLES:
        _serve_headless(settings, parts, log_level)
        return
    if http_server == "granian":
        check_port(settings.server.host, settings.server.port)
        _serve_granian(settings, log_level)
        return
    if http_server != "uvicorn":
        raise ConfigError(f"unknown HTTP server {http_server!r} (uvicorn or granian)")
    server = settings.server
    sock = (
        inherited(listen_fd) if listen_fd is not None else bind_listener(server.host, server.port)
    )
    configure_logging(log_level, settings.observability.log_format)
    runtime = Runtime.open(settings)
    built = parts(runtime) if parts else None
    app = build_app(
        runtime,
        services=built.services if built else (),
        mounts=built.mounts if built else None,
        own_process=True,
    )
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # URLs may carry write keys: segflow.access logs route templates
        log_config=None,  # uvicorn's loggers propagate to segflow's handler
        log_level=log_level,
        server_header=False,
    )
    logger.info("listening on http://%s:%d", server.host, sock.getsockname()[1])
    uvicorn.Server(config).run(sockets=[sock])


def _serve_headless(settings: Settings, parts: PartsFactory | None, log_level: str) -> None:
    """Run the background services until SIGTERM/SIGINT, with no HTTP server."""
    configure_logging(log_level, settings.observability.log_format)
    runtime = Runtime.open(settings)
    group = ServiceGroup(parts(runtime).services if parts else ())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    group.start()
    try:
        stop.wait()
    finally:
        group.stop()
        runtime.close()


def _serve_granian(settings: Settings, log_level: str) -> None:
    """Serve under granian; the app is built in its worker by ``segflow.server.asgi``."""
    try:
        from granian import Granian
    except ImportError as exc:
        raise ConfigError("granian is not installed: pip install 'segflow[granian]'") from exc
    from segflow.server.asgi import SETTINGS_ENV

    observability = msgspec.structs.replace(settings.observability, log_level=log_level)
    settings = msgspec.structs.replace(settings, observability=observability)
    os.environ[SETTINGS_ENV] = msgspec.json.encode(settings).decode()
    Granian(
        "segflow.server.asgi:create_app",
        factory=True,
        address=settings.server.host,
        port=settings.server.port,
        interface="asgi",  # type: ignore[arg-type]
        loop="uvloop",  # type: ignore[arg-type]
        http="1",  # type: ignore[arg-type]
        websockets=False,
        log_level=log_level,  # type: ignore[arg-type]
        log_access=False,
    ).serve()
