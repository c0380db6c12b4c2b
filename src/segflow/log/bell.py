"""A doorbell across processes: "the log has new records", rung after each commit.

The processor sleeps its idle poll interval (``stream.poll_interval_ms``, 200 ms) when it has
read everything; in one process the log's commit listener wakes it at once
(:meth:`segflow.log.sqlite.SqliteEventLog.on_commit`). When the collector and the processor are
different processes (``segflow serve``'s supervisor, ``--role``), nothing in the processor's
process sees the commit, so an event waited up to the whole interval. The bell is a Unix
datagram socket named after the log file: the process that listens binds it and wakes its
listeners on every datagram; every process that commits sends one empty datagram after each
group commit (non-blocking; nobody listening or a full queue are ignored — the poll interval
stays the bound, the bell only shortens it). On Linux the name is in the abstract namespace
(a NUL byte, ``segflow-bell-`` and a hash of the log's real path: no file, no length limit, released
when its process dies); elsewhere it is a socket file beside the log (``log.sqlite.bell``;
one left by a killed listener is detected, ``ECONNREFUSED``, and replaced).

One listener per log: a second process that asks to listen while another holds the bell
keeps polling (logged at debug).

>>> import tempfile, threading, os
>>> path = os.path.join(tempfile.mkdtemp(), "log.sqlite")
>>> rung = threading.Event()
>>> bell = Bell(path); bell.listen(rung.set)
True
>>> other = Bell(path); other.ring(); rung.wait(5)
True
>>> other.close(); bell.close()
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("segflow.log")

__all__ = ["Bell"]


def address(log_path: str | Path) -> str | bytes:
    """The bell's socket address for the log at ``log_path``.

    >>> found = address("/x/log.sqlite")
    >>> found[1:13] == b"segflow-bell" if sys.platform == "linux" else found.endswith(".bell")
    True
    """
    if sys.platform == "linux":
        real = os.path.realpath(log_path).encode()
        return b"\0segflow-bell-" + hashlib.blake2b(real, digest_size=12).hexdigest().encode()
    return f"{log_path}.bell"


class Bell:
    """The commit doorbell of the log at ``log_path`` (module docstring)."""

    def __init__(self, log_path: str | Path) -> None:
        self.path = address(log_path)
        self._send: socket.socket | None = None
        self._recv: socket.socket | None = None
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        """True when this process holds the bell (no other process listens to it)."""
        return self._recv is not None

    def ring(self) -> None:
        """Tell the listening process, if any, that the log has new records (never raises,
        never blocks)."""
        if not hasattr(socket, "AF_UNIX"):
            return
        try:
            if self._send is None:
                self._send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._send.setblocking(False)
            self._send.sendto(b"", self.path)
        except OSError:
            pass  # nobody listens, the queue is full (a wake is pending anyway), or stale

    def listen(self, listener: Callable[[], None]) -> bool:
        """Call ``listener()`` (from a daemon thread) whenever a process rings; False when
        another process holds the bell (this one then relies on its poll interval)."""
        with self._lock:
            if self._recv is not None:
                self._listeners.append(listener)
                return True
            sock = self._bind()
            if sock is None:
                return False
            self._listeners.append(listener)
            self._recv = sock
            self._thread = threading.Thread(
                target=self._serve, args=(sock,), name="segflow-log-bell", daemon=True
            )
            self._thread.start()
            return True

    def _bind(self) -> socket.socket | None:
        if not hasattr(socket, "AF_UNIX") or len(os.fsencode(self.path)) >= 100:
            return None  # no Unix sockets here, or a path longer than sun_path allows
        abstract = isinstance(self.path, bytes)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for _ in range(2):
            try:
                sock.bind(self.path)
                sock.settimeout(0.5)  # the listening thread notices close() on any platform
                return sock
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or abstract or not self._stale():
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        sock.close()
        logger.debug("log bell %s held by another process: polling", self.path)
        return None

    def _stale(self) -> bool:
        """True when the socket file at ``path`` has nobody behind it."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        finally:
            probe.close()
        return False

    def _serve(self, sock: socket.socket) -> None:
        while self._recv is sock:
            try:
                sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if self._recv is not sock:
                return
            for listener in list(self._listeners):
                try:
                    listener()
                except Exception:
                    logger.exception("a log bell listener failed")

    def close(self) -> None:
        """Stop listening (removing the socket file) and close the sending socket."""
        with self._lock:
            recv, self._recv = self._recv, None
            if self._send is not None:
                self._send.close()
                self._send = None
        if recv is not None:
            with contextlib.suppress(OSError):
                recv.shutdown(socket.SHUT_RDWR)
            recv.close()
            if isinstance(self.path, str):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            if self._thread is not None:
                self._thread.join(2)
