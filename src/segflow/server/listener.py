"""The listening socket of ``segflow serve``, bound before anything else happens.

Binding first makes a busy port a clear error (:class:`~segflow.server.exceptions.PortInUse`)
before the data directory is created or opened. The socket is then handed to uvicorn
(``uvicorn.Server.run(sockets=...)``); under the supervisor, the supervisor binds it once and
its HTTP workers inherit the descriptor (``--fd``), so they accept from one queue
(docs/serve.md, "One port").

>>> sock = bind_listener("127.0.0.1", 0)
>>> port = sock.getsockname()[1]
>>> try:
...     bind_listener("127.0.0.1", port)
... except PortInUse as exc:
...     print(exc.code)
port_in_use
>>> sock.close()
"""

from __future__ import annotations

import errno
import socket

from segflow.errors import ConfigError
from segflow.server.exceptions import PortInUse

BACKLOG = 2048  # uvicorn's default


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (``SO_REUSEADDR``, like uvicorn's own).

    Raises :class:`PortInUse` when another socket listens there, ``ConfigError`` when the
    address cannot be bound at all (unknown host, a privileged port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from exc
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
    return sock


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortInUse` when ``host:port`` cannot be bound now (for servers that bind
    it themselves, such as granian)."""
    bind_listener(host, port).close()


def inherited(fd: int) -> socket.socket:
    """The listening socket a supervisor passed down as descriptor ``fd``."""
    return socket.socket(fileno=fd)  # family and type come from the descriptor
