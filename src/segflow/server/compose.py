"""What ``segflow serve`` runs beside the collector. Add a part here: a service factory in
:func:`services` (started after the collector is ready, stopped before the log closes) or an
ASGI app in :func:`mounts` (served under its path prefix, e.g. the admin API at ``/api``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from segflow.collect.asgi import ASGIApp
from segflow.server.retention import LogRetention
from segflow.server.runtime import Runtime
from segflow.server.services import Service


def services(runtime: Runtime) -> Sequence[Service]:
    """The background services of the serve process (processor, loader, delivery, ...)."""
    log = runtime.settings.log
    return [
        LogRetention(
            runtime.log, retention_ms=log.retention_ms, interval_s=log.retention_interval_s
        )
    ]


def mounts(runtime: Runtime) -> Mapping[str, ASGIApp]:
    """ASGI apps mounted beside the collector, by path prefix."""
    return {}
