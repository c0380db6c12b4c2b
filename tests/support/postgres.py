"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary directory.

The server binaries come from Debian's ``postgresql`` package (``.ci/run`` installs it). The
server refuses to run as root, so as root it runs as the ``postgres`` user the package
creates (``runuser``). It listens on 127.0.0.1 on a free port and trusts local connections.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No server can start here (the reason says why)."""


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (apt-get install postgresql)"
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    bindir: Path
    runas: list[str]

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=segflow dbname=postgres"

    def stop(self) -> None:
        subprocess.run(
            [
                *self.runas,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres(timeout_s: float = 60.0) -> PostgresServer:
    """Start a fresh server; raises :class:`PostgresUnavailable` when it cannot."""
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="segflow-pg-"))
    datadir = base / "data"
    runas: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and runuser is missing")
        try:
            shutil.chown(base, user="postgres")
        except (LookupError, PermissionError) as exc:
            raise PostgresUnavailable(f"running as root and no postgres user: {exc}") from exc
        os.chmod(base, 0o700)
        runas = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run(
        [*runas, str(bindir / "initdb"), "-D", str(datadir), "-U", "segflow", "--auth=trust",
         "-E", "UTF8", "--locale=C.UTF-8"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
    port = _free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {datadir} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    server = PostgresServer(datadir, port, bindir, runas)
    started = subprocess.run(
        [*runas, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", options, "-l",
         str(base / "server.log"), "-w", "-t", str(int(timeout_s)), "start"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if started.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        server.stop()
        raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()} {log[-500:]}")
    _wait_ready(port, timeout_s)
    return server


def _wait_ready(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise PostgresUnavailable("the server did not accept connections") from None
            time.sleep(0.05)
