"""``/metrics``, ``/healthz`` and ``/readyz``: what an operator's monitoring reads.

- ``/healthz``: 200 while the process serves HTTP (liveness).
- ``/readyz``: 200 when every check passes, else 503 naming each failing check and why:
  the background services started, the stores answer, and each consumer group (processor,
  warehouse loader) lags at most ``observability.ready_max_lag`` records (0: no bound).
- ``/metrics``: the Prometheus text format: the process-wide metrics of
  :mod:`segflow.metrics` plus :class:`~segflow.server.gauges.StoreGauges`. Open by default
  (segflow binds loopback by default; scrape it where the port is reachable); with
  ``observability.metrics_auth = "token"`` it needs an API token with role ``read``
  (``Authorization: Bearer``, Prometheus' ``authorization.credentials_file``).

>>> import asyncio, os, tempfile
>>> from segflow.log.sqlite import SqliteEventLog
>>> log = SqliteEventLog(os.path.join(tempfile.mkdtemp(), "log.sqlite"), partitions=1)
>>> ops = OpsApp(log, readiness=[lambda: Check("stores", True)])
>>> sent = []
>>> async def send(m): sent.append(m)
>>> asyncio.run(ops({"type": "http", "method": "GET", "path": "/readyz", "headers": []}, None, send))
>>> sent[0]["status"], sent[1]["body"]
(200, b'{"ready":true,"checks":{"stores":{"ok":true}}}')
>>> log.close()
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from segflow.collect.asgi import Receive, Scope, Send, send_json
from segflow.log.base import ServedLog
from segflow.metrics import REGISTRY, render
from segflow.server.gauges import consumer_lag
from segflow.server.metricfiles import merged, published

logger = logging.getLogger("segflow.server.ops")
PATHS = ("/metrics", "/healthz", "/readyz")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes


@dataclass(frozen=True)
class Check:
    """One readiness check's outcome."""

    name: str
    ok: bool
    reason: str | None = None
    details: dict[str, Any] | None = None


Verify = Callable[[str], bool]  # does this bearer token allow reading the metrics?


def lag_check(log: ServedLog, max_lag: int) -> Callable[[], Check]:
    """Consumers within ``max_lag`` records of the log's end (0: always within)."""

    def check() -> Check:
        lags = consumer_lag(log)
        behind = {g: n for g, n in lags.items() if max_lag and n > max_lag}
        reason = None
        if behind:
            reason = ", ".join(f"{g} lags {n} records (max {max_lag})" for g, n in behind.items())
        return Check("consumers", not behind, reason, {"lag": lags})

    return check


class OpsApp:
    """The ASGI app serving :data:`PATHS` (mounted at each path by the serve app)."""

    def __init__(
        self,
        log: ServedLog,
        *,
        readiness: Sequence[Callable[[], Check]] = (),
        collectors: Sequence[Collector] = (),
        verify: Verify | None = None,
        published: Path | None = None,
    ) -> None:
        self.log = log
        self.published = published  # a data directory whose other processes publish metrics
        self.readiness = list(readiness)
        self.verify = verify
        self.scrape = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.scrape.register(collector)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("root_path", "") + scope.get("path", "")
        path = path.rstrip("/") or path
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"code": "method_not_allowed", "message": "use GET"})
        elif path == "/healthz":
            await send_json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            await self._ready(send)
        elif path == "/metrics":
            await self._metrics(scope, send)
        else:
            await send_json(send, 404, {"code": "not_found", "message": f"no route {path}"})

    async def _ready(self, send: Send) -> None:
        checks = await asyncio.to_thread(self._run_checks)
        ready = all(c.ok for c in checks)
        body: dict[str, Any] = {"ready": ready, "checks": {}}
        for c in checks:
            entry: dict[str, Any] = {"ok": c.ok}
            if c.reason:
                entry["reason"] = c.reason
            if c.details:
                entry.update(c.details)
            body["checks"][c.name] = entry
        if not ready:
            body["reason"] = "; ".join(f"{c.name}: {c.reason}" for c in checks if not c.ok)
        await send_json(send, 200 if ready else 503, body, [(b"cache-control", b"no-store")])

    def _run_checks(self) -> list[Check]:
        out = []
        for check in self.readiness:
            try:
                out.append(check())
            except Exception as exc:  # a store that cannot answer is the finding
                out.append(Check(getattr(check, "__name__", "check"), False, f"{type(exc).__name__}: {exc}"))  # fmt: skip
        return out

    async def _metrics(self, scope: Scope, send: Send) -> None:
        if self.verify is not None and not self._authorized(scope):
            await send_json(
                send,
                401,
                {"code": "unauthorized", "message": "an API token with role read is required"},
                [(b"www-authenticate", b"Bearer")],
            )
            return
        body = await asyncio.to_thread(self._render)
        headers = [
            (b"content-type", CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _render(self) -> bytes:
        if self.published is None:
            return render(REGISTRY) + render(self.scrape)
        others = published(self.published, skip_pid=os.getpid())
        return merged(REGISTRY, others, os.getpid()) + render(self.scrape)

    def _authorized(self, scope: Scope) -> bool:
        assert self.verify is not None
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, token = bytes(value).decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and self.verify(token.strip())
        return False
