"""A real webhook receiver on loopback for the delivery tests: it records every request and
answers with a status (and after a delay) the test sets, or that a behaviour decides per request.

Tests take receivers from the ``receiver_factory`` fixture (tests/conftest.py), which closes
every receiver a test made::

    hook = receiver_factory()
    hook.status = 503           # segflow retries ...
    hook.status = 200           # ... and delivers
    until(lambda: hook.ok())
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

Behaviour = Callable[[int, dict[str, str], bytes], tuple[int, dict[str, str], float]]
"""``behaviour(n, headers, body) -> (status, extra headers, delay_s)`` for the n-th request."""


class Received(msgspec.Struct):
    """One request as the receiver saw it (header names lower-cased) and what it answered."""

    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """A threaded HTTP server on ``127.0.0.1`` recording every POST in ``requests``.

    It answers ``status`` after ``delay_s`` (both settable while it runs), or what
    ``behaviour`` returns when one is given. A delay ends early when the receiver closes.

    >>> hook = Receiver()
    >>> hook.url.startswith("http://127.0.0.1:")
    True
    >>> hook.close()
    """

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        status: int = 200,
        delay_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.status = status
        self.delay_s = delay_s
        self.behaviour: Behaviour = behaviour or (lambda n, h, b: (self.status, {}, self.delay_s))
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def ok(self) -> list[Received]:
        """The requests it answered with a 2xx."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    @property
    def bodies(self) -> list[bytes]:
        """The bodies of the requests it answered with a 2xx (those segflow counts delivered)."""
        return [r.body for r in self.ok()]

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        """Record one request; the status and headers to answer it with."""
        with self.lock:
            n = len(self.requests)
        status, extra, delay_s = self.behaviour(n, headers, body)
        if delay_s:
            self.release.wait(delay_s)
        with self.lock:
            self.requests.append(Received(headers=headers, body=body, status=status))
        return status, extra

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender died mid-request (a SIGKILL test): nothing
                self.close_connection = True  # was delivered, and nobody waits for an answer
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = receiver.answer(headers, body)
            try:
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:  # the client gave up waiting (a hanging receiver's test)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
