"""``segflow serve``'s default: a supervisor of role processes sized to the machine.

The supervisor binds the port, prepares the data directory, then runs each part of segflow as
a child ``segflow serve --single-process --role ...`` on the same directory and settings:

===============  ==========  ===============================================================
child            roles       runs
===============  ==========  ===============================================================
``http-1..N``    collect,api the collection API, the admin API and the console, sharing the
                             supervisor's listening socket (``--workers``, default ``auto``)
``pipeline``     process,    the processor, the segment-definition watcher, the warehouse
                 load        loader, the ML schedule and deletion regulations (these two ask
                             the processor and the loader of their own process: roles.py)
``activate``     activate    delivery to destinations
===============  ==========  ===============================================================

With an API port (``--api-port``, ``server.api_port``) the reads get processes of their own,
as a hosted CDP serves its tracking API and its profile API apart: the ``http-1..N`` children
run ``collect`` alone on the port, and ``api-1..M`` children (``--api-workers``, default 1) run
``api`` (the admin API and the console) on the API port, so a profile or members read never
waits for the collector's interpreter lock (docs/serve.md, "Reads beside ingest").

A child that exits unexpectedly is restarted after a delay that doubles from 0.5 s to 30 s and
starts again at 0.5 s once the child stayed up a minute. The supervisor keeps a small JSON file,
``DATA_DIR/supervisor.json`` (:data:`segflow.serving.status.SUPERVISOR_FILE`), which the admin
API shows as ``parts.supervisor`` in ``/api/v1/status``. SIGTERM, SIGINT or SIGHUP stop it:
every child gets SIGTERM, stragglers get SIGKILL after 30 s (or at a second signal), and the
supervisor exits 0. Each child dies with the supervisor (Linux: ``PR_SET_PDEATHSIG``), so a
SIGKILL of ``segflow serve`` stops everything. docs/serve.md has the whole story.

>>> [(c.name, c.roles) for c in layout(2)]
[('http-1', 'collect,api'), ('http-2', 'collect,api'), ('pipeline', 'process,load'), ('activate', 'activate')]
>>> [(c.name, c.roles, c.listener) for c in layout(1, api_workers=1) if c.http]
[('http-1', 'collect', 'main'), ('api-1', 'api', 'api')]
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import msgspec

from segflow.config import Settings
from segflow.errors import ConfigError
from segflow.server.listener import bind_listener
from segflow.serving.status import SUPERVISOR_FILE

logger = logging.getLogger("segflow.server.supervisor")

MAX_AUTO_WORKERS = 8  # beyond this the shared stores, not the HTTP layer, bound the collector
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STEADY_S = 60.0  # up this long, a child's next restart waits FIRST_DELAY_S again
STOP_TIMEOUT_S = 30.0
TICK_S = 0.1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def resolve_workers(value: int | str, cpus: int | None = None) -> int:
    """The number of HTTP worker processes: ``auto`` is one per core but one (the processor's),
    at least 1 and at most :data:`MAX_AUTO_WORKERS`; a number is taken as it is.

    >>> resolve_workers("auto", cpus=2), resolve_workers("auto", cpus=64), resolve_workers("3")
    (1, 8, 3)
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        count = cpus if cpus is not None else os.cpu_count() or 1
        return max(1, min(count - 1, MAX_AUTO_WORKERS))
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ConfigError(f"server.workers: {value!r} is not 'auto' or a number >= 1")
    return workers


def resolve_api_workers(value: int) -> int:
    """The number of API worker processes (with an API port): a number >= 1.

    >>> resolve_api_workers(2)
    2
    """
    if value < 1:
        raise ConfigError(f"server.api_workers: {value!r} is not a number >= 1")
    return value


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: its name, its roles (``--role``), whether it serves HTTP and
    on which listening socket (``main``: the port; ``api``: the API port)."""

    name: str
    roles: str
    http: bool = False
    listener: str = "main"


def layout(workers: int, *, api_workers: int = 0) -> tuple[ChildSpec, ...]:
    """The children of a supervisor with ``workers`` HTTP workers and ``api_workers`` API
    workers on an API port of their own (0: the HTTP workers serve the API; the module's
    table)."""
    roles = "collect" if api_workers else "collect,api"
    http = tuple(ChildSpec(f"http-{n}", roles, http=True) for n in range(1, workers + 1))
    api = tuple(
        ChildSpec(f"api-{n}", "api", http=True, listener="api") for n in range(1, api_workers + 1)
    )
    return (*http, *api, ChildSpec("pipeline", "process,load"), ChildSpec("activate", "activate"))


@dataclass
class Child:
    """A child's process and its restart bookkeeping."""

    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    state: str = "starting"  # running, restarting, stopping, stopped
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float = 0.0
    delay_s: float = FIRST_DELAY_S
    last_exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        pid = self.proc.pid if self.proc is not None else None
        return {"name": self.spec.name, "role": self.spec.roles, "pid": pid,
                "state": self.state, "restarts": self.restarts,
                "last_exit_code": self.last_exit_code}  # fmt: skip


Command = Callable[[ChildSpec], list[str]]


def child_command(settings: Settings, extra: Sequence[str] = ()) -> Command:
    """The command line of a child: ``segflow serve --single-process --role ...`` on the
    supervisor's data directory, address (an API worker: the API port) and ``extra`` flags
    (``--config``, ``--log-level``).

    >>> from segflow.config import load_settings
    >>> command = child_command(load_settings(overrides={"server": {"data_dir": "/d"}}))
    >>> command(ChildSpec("activate", "activate"))[3:]
    ['serve', '--single-process', '--role', 'activate', '--data-dir', '/d', '--host', '127.0.0.1', '--port', '8080']
    """
    base = [sys.executable, "-m", "segflow.cli.main", "serve", "--single-process"]
    server = settings.server
    where = ["--data-dir", server.data_dir, "--host", server.host]

    def command(spec: ChildSpec) -> list[str]:
        api = spec.listener == "api" and server.api_port is not None
        port = server.api_port if api else server.port
        return [*base, "--role", spec.roles, *where, "--port", str(port), *extra]

    return command


class Supervisor:
    """Starts the children, restarts those that exit, stops them all on a signal.

    ``listener`` is the bound socket the HTTP children inherit (``--fd``); ``api_listener``,
    when given, the API port's, served by ``api_workers`` API children; ``command`` builds a
    child's command line (:func:`child_command`)."""

    def __init__(
        self,
        settings: Settings,
        listener: socket.socket,
        command: Command,
        *,
        workers: int,
        api_listener: socket.socket | None = None,
        api_workers: int = 1,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.api_listener = api_listener
        self.command = command
        api = api_workers if api_listener is not None else 0
        self.children = [Child(spec) for spec in layout(workers, api_workers=api)]
        self.stop_timeout_s = stop_timeout_s
        self.status_path = settings.data_path / SUPERVISOR_FILE
        self.started_ms = int(time.time() * 1000)
        self._signals = 0
        self._preexec = _child_setup(os.getpid())

    def catch_signals(self) -> None:
        """Take SIGTERM/SIGINT/SIGHUP from now on (a stop asked before :meth:`run` starts no
        child)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT/SIGHUP; the exit code (0 once every child stopped)."""
        self.catch_signals()
        if not self._signals:
            for child in self.children:
                self._spawn(child)
            self._write_status()
            sys.stderr.write(banner(self.settings, self.children))
            sys.stderr.flush()
        while not self._signals:
            if self._tick(time.monotonic()):
                self._write_status()
            time.sleep(TICK_S)
        self._stop_all()
        self.status_path.unlink(missing_ok=True)
        self.listener.close()
        if self.api_listener is not None:
            self.api_listener.close()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1

    def _spawn(self, child: Child) -> None:
        cmd = self.command(child.spec)
        fds: tuple[int, ...] = ()
        if child.spec.http:
            api = self.api_listener if child.spec.listener == "api" else None
            fds = ((api or self.listener).fileno(),)
            cmd = [*cmd, "--fd", str(fds[0])]
        child.started_at = time.monotonic()
        try:
            child.proc = subprocess.Popen(cmd, pass_fds=fds, preexec_fn=self._preexec)
        except OSError as exc:  # no memory, no pids left: try again later, like a crash
            logger.error("cannot start %s: %s", child.spec.name, exc)
            self._exited(child, None, child.started_at)
            return
        child.state = "running"

    def _tick(self, now: float) -> bool:
        """Reap exited children, restart those whose delay passed; True when anything changed."""
        changed = False
        for child in self.children:
            if child.state == "running" and child.proc is not None:
                code = child.proc.poll()
                if code is not None:
                    self._exited(child, code, now)
                    changed = True
            elif child.state == "restarting" and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
                logger.info("restarted %s", child.spec.name,
                            extra={"role": child.spec.roles, "pid": self._pid(child),
                                   "restarts": child.restarts})  # fmt: skip
                changed = True
        return changed

    def _exited(self, child: Child, code: int | None, now: float) -> None:
        if now - child.started_at >= STEADY_S:
            child.delay_s = FIRST_DELAY_S
        wait_s = child.delay_s
        child.delay_s = min(wait_s * 2, MAX_DELAY_S)
        child.state, child.restart_at, child.last_exit_code = "restarting", now + wait_s, code
        logger.warning(
            "%s exited unexpectedly (code %s); restarting in %.1f s",
            child.spec.name, code, wait_s,
            extra={"role": child.spec.roles, "pid": self._pid(child), "exit_code": code,
                   "next_delay_s": wait_s},
        )  # fmt: skip

    def _stop_all(self) -> None:
        """SIGTERM every live child, wait for them, SIGKILL whoever outlives the timeout."""
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in self.children:
            child.state = "stopping" if child in live else "stopped"
        self._write_status()
        logger.info("stopping %d processes", len(live))
        for child in live:
            _send(child, signal.SIGTERM)
        deadline, signals = time.monotonic() + self.stop_timeout_s, self._signals
        while any(c.proc.poll() is None for c in live if c.proc is not None):
            if time.monotonic() >= deadline or self._signals > signals:
                break  # out of patience, or asked again (a second Ctrl-C)
            time.sleep(TICK_S)
        for child in live:
            assert child.proc is not None
            if child.proc.poll() is None:
                logger.warning("%s did not stop in time: killed", child.spec.name,
                               extra={"role": child.spec.roles, "pid": child.proc.pid})  # fmt: skip
                _send(child, signal.SIGKILL)
            child.last_exit_code = child.proc.wait()
            child.state = "stopped"

    def _write_status(self) -> None:
        """``supervisor.json``, replaced atomically (the API reads it from other processes)."""
        report = {"pid": os.getpid(), "started_at_ms": self.started_ms,
                  "children": [c.to_dict() for c in self.children]}  # fmt: skip
        tmp = self.status_path.with_name(f".{SUPERVISOR_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(report))
        os.replace(tmp, self.status_path)

    @staticmethod
    def _pid(child: Child) -> int | None:
        return child.proc.pid if child.proc is not None else None


def supervise(
    settings: Settings, *, workers: int, extra: Sequence[str] = (), log_level: str | None = None
) -> int:
    """Bind the port and the API port when there is one
    (:class:`~segflow.server.exceptions.PortInUse` before anything else), make the data
    directory's stores once, then supervise the children until a stop signal.

    ``extra`` are flags every child gets as well (``--config``, ``--log-level``...)."""
    from segflow.server.commands import CommandQueue, queue_path
    from segflow.serving.runtime import Runtime
    from segflow.telemetry.logs import configure_logging

    server = settings.server
    listener = bind_listener(server.host, server.port)
    api_listener = None
    if server.api_port is not None:
        try:
            api_listener = bind_listener(server.host, server.api_port)
        except BaseException:
            listener.close()
            raise
    port = int(listener.getsockname()[1])  # --port 0: the one the kernel chose
    api_port = None if api_listener is None else int(api_listener.getsockname()[1])
    settings = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(server, port=port, api_port=api_port)
    )
    level = (log_level or settings.observability.log_level).lower()
    configure_logging(level, settings.observability.log_format)
    command = child_command(settings, extra)
    supervisor = Supervisor(
        settings,
        listener,
        command,
        workers=workers,
        api_listener=api_listener,
        api_workers=resolve_api_workers(server.api_workers),
    )
    supervisor.catch_signals()  # Ctrl-C from here on stops cleanly, without a traceback
    Runtime.open(settings).close()  # the children then open existing files, none creates them
    CommandQueue(queue_path(settings.data_path)).close()
    return supervisor.run()


_PYTHON_BY_SETTING = "pure-Python evaluator ([stream] kernel = false)"


def banner(settings: Settings, children: Sequence[Child]) -> str:
    """The block ``segflow serve`` prints to stderr once its children are started, with the
    rule evaluator the children run (they inherit this process's install and environment)."""
    from segflow.rules.incremental.kernel import status

    server = settings.server
    host = f"[{server.host}]" if ":" in server.host else server.host
    url = f"http://{host}:{server.port}"
    api_url = url if server.api_port is None else f"http://{host}:{server.api_port}"
    lines = [f"segflow serve: supervisor pid {os.getpid()}, data {settings.data_path.resolve()}"]
    for child in children:
        pid = child.proc.pid if child.proc is not None else "-"
        lines.append(f"  {child.spec.name:<10} {child.spec.roles:<14} pid {pid}")
    lines += [
        f"  collect    {url}/v1",
        f"  api        {api_url}/api/v1  (docs {api_url}/api/v1/docs)",
        f"  console    {api_url}/console",
        f"  rules      {status() if settings.stream.kernel else _PYTHON_BY_SETTING}",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(lines) + "\n"


def _send(child: Child, signum: int) -> None:
    if child.proc is not None:
        child.proc.send_signal(signum)  # a no-op once the child was reaped


def _child_setup(parent: int) -> Callable[[], None]:
    """What a child runs between fork and exec: its own process group (a terminal's Ctrl-C
    reaches the supervisor alone, which stops the children once, in order) and, on Linux,
    SIGKILL when the supervisor dies."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died before the line above
                os._exit(1)

    return setup
