"""Wiring ``/metrics``, ``/healthz`` and ``/readyz`` into the serve process (``compose``).

Readiness checks: ``services`` (every background service started: the :class:`Started`
marker is the last service, so it starts after all the others and stops first), ``stores``
(the log, catalog, state and delivery files answer a read) and ``consumers`` (lag bounds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from segflow.activate.store import DeliveryStore
from segflow.catalog.tokens import TokenStore
from segflow.collect.asgi import ASGIApp
from segflow.errors import ConfigError
from segflow.server.app import KeepPath
from segflow.server.gauges import StoreGauges
from segflow.server.ops import PATHS, Check, OpsApp, lag_check
from segflow.serving.runtime import Runtime
from segflow.stream.reader import ProfileReader


class Started:
    """A service that only records that the services before it started (readiness)."""

    name = "ready-marker"

    def __init__(self) -> None:
        self.event = threading.Event()

    def start(self) -> None:
        self.event.set()

    def stop(self) -> None:
        self.event.clear()

    def check(self) -> Check:
        if self.event.is_set():
            return Check("services", True)
        return Check("services", False, "background services not started (or stopping)")


def stores_check(
    runtime: Runtime, reader: ProfileReader, delivery: DeliveryStore
) -> Callable[[], Check]:
    """Each store answers a cheap read."""

    def check() -> Check:
        failing = []
        probes: dict[str, Callable[[], object]] = {
            "log": runtime.log.end_offsets,
            "catalog": runtime.catalog.list,
            "state": lambda: reader.reader.get("meta", "outbox_seq"),
            "delivery": lambda: delivery.cursor("feed"),
        }
        for name, probe in probes.items():
            try:
                probe()
            except Exception as exc:
                failing.append(f"{name}: {type(exc).__name__}: {exc}")
        return Check("stores", not failing, "; ".join(failing) or None)

    return check


def ops_mounts(
    runtime: Runtime,
    reader: ProfileReader,
    backfill_pending: Callable[[], bool],
    delivery: DeliveryStore,
    tokens: TokenStore,
    supervised: bool = False,
) -> tuple[dict[str, ASGIApp], Started]:
    """The ops app mounted at each of its paths, and the readiness marker service
    (``backfill_pending``: whether the processor, in this process or not, is backfilling;
    ``supervised``: one of several processes, whose ``/metrics`` merges the others'
    published samples, :mod:`segflow.server.metricfiles`)."""
    settings = runtime.settings.observability
    if settings.metrics_auth not in ("open", "token"):
        raise ConfigError(
            f"observability.metrics_auth must be open or token, not {settings.metrics_auth!r}"
        )
    started = Started()
    verify = None
    if settings.metrics_auth == "token":

        def verify(token: str) -> bool:
            info = tokens.verify(token)
            return info is not None and info.allows("read")

    gauges = StoreGauges(
        runtime.settings.data_path,
        runtime.log,
        delivery,
        backfill_pending=backfill_pending,
    )
    app = OpsApp(
        runtime.log,
        readiness=[
            started.check,
            stores_check(runtime, reader, delivery),
            lag_check(runtime.log, settings.ready_max_lag),
        ],
        collectors=[gauges],
        verify=verify,
        published=runtime.settings.data_path if supervised else None,
    )
    mounted = KeepPath(app)
    return {path: mounted for path in PATHS}, started
