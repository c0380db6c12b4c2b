"""Which warehouse engine ``segflow serve`` uses: DuckDB (the default) or PostgreSQL.

``warehouse.engine`` picks it (``SEGFLOW_WAREHOUSE__ENGINE=postgres`` with
``SEGFLOW_WAREHOUSE__DSN=postgresql://...``); the rest of serve gets a function that opens a
connection and a loader, whichever the engine.

>>> from segflow.config import load_settings
>>> s = load_settings(env={"SEGFLOW_WAREHOUSE__ENGINE": "postgres", "SEGFLOW_WAREHOUSE__DSN": "dbname=wh"})
>>> s.warehouse.engine, s.warehouse.dsn
('postgres', 'dbname=wh')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segflow.clock import Clock
from segflow.config import Settings
from segflow.errors import ConfigError
from segflow.log.base import EventLog
from segflow.spec.changes import ChangeFeed
from segflow.warehouse.connection import connect, warehouse_path
from segflow.warehouse.loader import WarehouseLoader

ENGINES = ("duckdb", "postgres")


def _check(settings: Settings) -> str:
    engine = settings.warehouse.engine
    if engine not in ENGINES:
        raise ConfigError(f"warehouse.engine: unknown engine {engine!r} (one of {ENGINES})")
    if engine == "postgres" and not settings.warehouse.dsn:
        raise ConfigError("warehouse.dsn: the postgres engine needs a DSN (SEGFLOW_WAREHOUSE__DSN)")
    return engine


def opener(settings: Settings) -> Callable[[], Any]:
    """A function opening a new warehouse connection (close it after use)."""
    timeout_s = settings.warehouse.lock_timeout_s
    if _check(settings) == "postgres":
        from segflow.warehouse.postgres import connect_postgres

        dsn = settings.warehouse.dsn
        return lambda: connect_postgres(dsn, timeout_s=timeout_s)
    path = warehouse_path(settings.data_path)
    return lambda: connect(path, timeout_s=timeout_s)


def build_loader(
    settings: Settings, log: EventLog, change_feed: ChangeFeed | None, clock: Clock
) -> WarehouseLoader:
    """The loader of the configured engine."""
    if _check(settings) == "postgres":
        from segflow.warehouse.postgres_loader import PostgresLoader

        return PostgresLoader(log, change_feed, settings.warehouse.dsn, clock, settings.warehouse)
    path = warehouse_path(settings.data_path)
    return WarehouseLoader(log, change_feed, path, clock, settings.warehouse)
