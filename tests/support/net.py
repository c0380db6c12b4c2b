"""Ports on loopback for the tests' servers: each test takes its own."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, deadline_s: float = 15.0) -> bool:
    """Whether something accepts connections on ``port`` within ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
