"""Roles of a serve process (``segflow serve --role collect,process``): which parts it runs.

=========  ===================================================================
role       runs
=========  ===================================================================
collect    the collection API (``/v1/...``) writing to the log
process    the stream processor (its partitions: all, or a consumer group's share
           on Kafka) and the segment-definition watcher
load       the warehouse loader (one per warehouse: DuckDB has one writer)
activate   delivery to destinations
api        the admin API (``/api/v1``) and the web console (``/console``)
=========  ===================================================================

The default is every role in one process. A process with neither ``collect`` nor ``api`` opens
no HTTP port. The ML scheduler runs in a process that has both ``process`` and ``load``.

>>> sorted(parse_roles("collect, api"))
['api', 'collect']
>>> parse_roles("") == frozenset(ROLES)
True
"""

from __future__ import annotations

from collections.abc import Iterable

from segflow.collect.asgi import Receive, Scope, Send
from segflow.errors import ConfigError

ROLES = ("collect", "process", "load", "activate", "api")
HTTP_ROLES = frozenset({"collect", "api"})


def parse_roles(value: str | Iterable[str]) -> frozenset[str]:
    """Roles from ``"a,b"`` or a list; empty means all. Raises ``ConfigError`` on unknown ones."""
    items = value.split(",") if isinstance(value, str) else list(value)
    chosen = frozenset(r.strip().lower() for r in items if r.strip())
    unknown = sorted(chosen - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown role(s) {', '.join(unknown)} (roles: {', '.join(ROLES)})")
    return chosen or frozenset(ROLES)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The root of a serve process without the ``collect`` role: 404 JSON (``/health``: 200)."""
    if scope["type"] != "http":
        return
    ok = scope.get("path") == "/health"
    body = b'{"status":"ok"}' if ok else b'{"code":"not_found","message":"no collector here"}'
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200 if ok else 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})
