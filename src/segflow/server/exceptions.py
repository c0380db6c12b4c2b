"""Errors of starting ``segflow serve``.

::

    SegflowError
    └── ConfigError
        └── PortInUse      the address is taken (checked before the data directory is touched)
"""

from __future__ import annotations

from segflow.errors import ConfigError


class PortInUse(ConfigError):
    """Another process listens on ``host:port``.

    >>> PortInUse("127.0.0.1", 8080).to_dict()["details"]
    {'host': '127.0.0.1', 'port': 8080}
    """

    code = "port_in_use"

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"{host}:{port} is already in use: stop the other server or pick --port",
            details={"host": host, "port": port},
        )
        self.host = host
        self.port = port
