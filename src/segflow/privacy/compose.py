"""Wiring deletion, suppression and retention checks into one serve process.

``segflow.server.compose`` calls :func:`build` with the parts it made; this module hooks the
suppression list into the three readers of raw events (the collector's ingestor, the
processor, the warehouse loader) and makes the regulation runner, a service started after
the processor and the loader and stopped before them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from segflow.activate.store import DeliveryStore
from segflow.catalog.audit import AuditLog
from segflow.catalog.db import catalog_target
from segflow.clock import Clock
from segflow.collect.ingest import Ingestor
from segflow.config import Settings
from segflow.errors import ValidationError
from segflow.log.base import ServedLog
from segflow.privacy import retention
from segflow.privacy.compact import compact
from segflow.privacy.job import Owners, RegulationJob, ShreddingLog
from segflow.privacy.runner import RegulationRunner
from segflow.privacy.service import PrivacyService
from segflow.privacy.store import PrivacyStore
from segflow.privacy.suppression import SuppressionList
from segflow.segments.service import SegmentService
from segflow.segments.store import DefinitionStore
from segflow.stream.processor import Processor
from segflow.warehouse.loader import WarehouseLoader

if TYPE_CHECKING:
    from segflow.log.sqlite import SqliteEventLog


@dataclass
class PrivacyParts:
    """What the serve process keeps: the service (API), the runner (a service), the list."""

    store: PrivacyStore
    service: PrivacyService
    runner: RegulationRunner
    suppressions: SuppressionList


def build(
    settings: Settings,
    clock: Clock,
    *,
    ingestor: Ingestor,
    log: ServedLog,
    processor: Processor,
    loader: WarehouseLoader,
    delivery: DeliveryStore,
    audit: AuditLog | None,
    segments: SegmentService,
) -> PrivacyParts:
    """The privacy parts of a serve process, hooked into the readers of raw events; rules
    that read more raw history than is kept are refused from now on (HTTP 400)."""
    segments.history_check = retention.guard(settings)
    data = Path(settings.data_path)
    store = PrivacyStore(catalog_target(settings))
    suppressions = SuppressionList(store.key(), settings.identity, store.suppressed_hashes())
    ingestor.blocked = suppressions.blocks_event
    processor.blocked = suppressions.blocks
    loader.skip, loader.suppressions = suppressions.blocks_event, suppressions
    owners = Owners(
        log=cast("SqliteEventLog | ShreddingLog", log),
        processor=processor,
        loader=loader,
        delivery=delivery,
        data_dir=data,
    )
    job = RegulationJob(store, suppressions, owners, settings.privacy, clock, audit)
    runner = RegulationRunner(
        job,
        store,
        suppressions,
        compact=functools.partial(
            compact, owners, store, timeout_s=settings.privacy.step_timeout_s
        ),
        interval_s=settings.privacy.poll_interval_s,
    )
    service = PrivacyService(
        store,
        rules=settings.identity,
        audit=audit,
        on_submit=runner.wake,
        unsupported=regulations_unsupported(settings),
    )
    return PrivacyParts(store, service, runner, suppressions)


def regulations_unsupported(settings: Settings) -> str | None:
    """Why this deployment cannot carry out regulations, or ``None`` when it can.

    The job erases events from the embedded log by position, and from a Kafka topic by
    deleting the keys its records are sealed under (crypto-shredding, docs/privacy.md). A
    regulation accepted by a driver that can do neither would stay queued forever, so it is
    refused instead.

    >>> from segflow.config import load_settings
    >>> regulations_unsupported(load_settings(overrides={"log": {"driver": "kafka"}})) is None
    True
    >>> regulations_unsupported(load_settings()) is None
    True
    >>> other = load_settings(overrides={"log": {"driver": "pulsar"}})
    >>> regulations_unsupported(other).startswith("deletion and suppression regulations need")
    True
    """
    if settings.log.driver in ("sqlite", "kafka"):
        return None
    return (
        "deletion and suppression regulations need the embedded log or Kafka;"
        f" with log.driver = {settings.log.driver} events cannot be erased from the log one by"
        " one, so no regulation would run (docs/scaling.md)"
    )


def check_retention(settings: Settings) -> None:
    """Refuse to start (``RetentionTooShort``, a ``ConfigError``) when a retention is shorter
    than what the stored rules read."""
    if not retention.retentions(settings):
        return
    definitions = DefinitionStore(catalog_target(settings))
    try:
        program = SegmentService(definitions).program()
    except ValidationError:  # a rule set that does not compile is the watcher's to report
        return
    finally:
        definitions.close()
    retention.check(settings, program)


def suppression_filter(settings: Settings) -> SuppressionList:
    """The data directory's suppression list as stored now (for ``segflow import``, another
    process: its ingestor drops suppressed events like the collector does)."""
    store = PrivacyStore(catalog_target(settings))
    try:
        return SuppressionList(store.key(), settings.identity, store.suppressed_hashes())
    finally:
        store.close()
