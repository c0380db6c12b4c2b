"""The demo's local "ad platform": a real HTTP server on loopback that verifies and keeps the
webhooks segflow sends it (Standard Webhooks signatures, checked with the destination secret).

>>> r = AdPlatform()
>>> r.url.startswith("http://127.0.0.1:")
True
>>> r.close()
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True when one of ``webhook-signature``'s ``v1,`` signatures matches ``secret``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()]
    return any(hmac.compare_digest(expected, s) for s in offered)


class AdPlatform:
    """Keeps every received payload with whether its signature verified."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = bool(platform.secret) and verify(platform.secret, headers, body)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
                with platform.lock:
                    platform.received.append({"verified": ok, "payload": payload})
                self.send_response(204 if ok else 401)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/audiences"

    def payloads(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["payload"] for r in self.received if r["verified"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
