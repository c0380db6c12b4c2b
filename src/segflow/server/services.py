"""Background services of ``segflow serve`` (the processor, the warehouse loader, delivery...).

A service is anything with ``name``, ``start()`` and ``stop()``. The server starts them in
order once the collector is ready and stops them in reverse order at shutdown, before the log
is closed. ``start`` must return promptly (run work on a thread or an asyncio task); most
services are a :class:`segflow.background.BackgroundLoop` (a ``tick`` every ``interval_s`` on
a daemon thread).

>>> class Ticker:
...     name = "ticker"
...     def start(self) -> None: print("start")
...     def stop(self) -> None: print("stop")
>>> group = ServiceGroup([Ticker()])
>>> group.start(); group.stop()
start
stop
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

logger = logging.getLogger("segflow.server")


class Service(Protocol):
    """A startable part of the serve process."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ServiceGroup:
    """Starts services in order, stops the started ones in reverse order."""

    def __init__(self, services: Sequence[Service]) -> None:
        self._services = list(services)
        self._started: list[Service] = []

    def start(self) -> None:
        for service in self._services:
            logger.info("starting %s", service.name)
            service.start()
            self._started.append(service)

    def stop(self) -> None:
        while self._started:
            service = self._started.pop()
            try:
                service.stop()
            except Exception:
                logger.exception("stopping %s failed", service.name)
