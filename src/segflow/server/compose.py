"""What ``segflow serve`` runs beside the collector, wired from one data directory.

:func:`assemble` builds every part once and returns the services (started in order after the
collector is ready, stopped in reverse before the log closes) and the ASGI apps mounted beside
the collector:

=====================  ===============================================================
service                what
=====================  ===============================================================
segment-definitions    recompiles segments/traits from ``catalog.sqlite`` on change
processor              log -> identity -> profiles -> rules -> change outbox
warehouse-loader       log + change feed -> ``warehouse.duckdb`` (micro-batches)
delivery               change feed -> delivery queue -> destinations
ml-scheduler           nightly model jobs; scores and clusters back into profile state
syncs                  pulled syncs from HubSpot, Zendesk, Stripe, Salesforce (docs/syncs.md)
log-retention          deletes consumed log records past ``log.retention_ms`` (off by default)
privacy                runs deletion/suppression regulations (``segflow.privacy``)
pipeline-snapshot      publishes the processor's and loader's figures (``snapshots``)
commands               runs what other processes' APIs queued for the processor
=====================  ===============================================================

``server.roles`` (``segflow serve --role``, :mod:`segflow.server.roles`) picks which of them
run here; the default is all.

The admin API (``/api/v1/...``) and the web console (``/console``) share the processor's reader,
the activation service and the segment service with the services, so a change made over the
API takes effect in this process without a restart. In a process with ``process`` and
``load`` the API calls the processor and the loader directly; in any other it reads their
figures from ``DATA_DIR/run/pipeline.json`` and queues what it asks of the processor in
``DATA_DIR/commands.sqlite`` (``segflow.serving.snapshots``, ``segflow.server.commands``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segflow.activate.files import ExportRoot, FileSink
from segflow.activate.secretbox import SecretBox
from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore
from segflow.activate.worker import DeliveryWorker
from segflow.api.app import build_api
from segflow.api.auth import CachedTokens
from segflow.catalog.audit import AuditLog
from segflow.catalog.db import catalog_target
from segflow.catalog.tokens import TokenStore
from segflow.collect.asgi import ASGIApp
from segflow.ml.jobs import AttributeSink
from segflow.ml.reasons import score_reasons
from segflow.privacy import compose as privacy_compose
from segflow.privacy.compose import PrivacyParts
from segflow.privacy.runner import SuppressionRefresh
from segflow.segments.service import DefinitionWatcher, SegmentService
from segflow.segments.store import DefinitionStore
from segflow.server import wakeups
from segflow.server.app import KeepPath
from segflow.server.commands import (
    CommandQueue,
    CommandRunner,
    QueuedSink,
    QueuedSplitter,
    queue_path,
)
from segflow.server.commands import handlers as command_handlers
from segflow.server.metricfiles import MetricsPublisher
from segflow.server.ml import MlService
from segflow.server.observability import ops_mounts
from segflow.server.ratelimit import TokenRateLimit
from segflow.server.retention import LogRetention
from segflow.server.roles import ROLES, parse_roles
from segflow.server.services import Service
from segflow.serving.deps import ApiDeps, Splitter
from segflow.serving.runtime import Runtime
from segflow.serving.snapshots import FigureSource, LocalFigures, SnapshotFigures, SnapshotWriter
from segflow.stream.compose import build_processor, build_reader, state_path
from segflow.stream.outbox import StateChangeFeed
from segflow.stream.processor import Processor
from segflow.syncs.runner import SyncRunner, SyncSchedule
from segflow.syncs.store import SyncStore
from segflow.telemetry.metrics import REGISTRY
from segflow.ui import build_console
from segflow.warehouse import backends as warehouse_backends
from segflow.warehouse.loader import CONSUMER_GROUP as LOADER_GROUP
from segflow.warehouse.loader import WarehouseLoader

if TYPE_CHECKING:
    from segflow.log.lease import PartitionLease


@dataclass
class Assembly:
    """Every part of one serve process (tests and the demo reach into it)."""

    processor: Processor
    loader: WarehouseLoader
    delivery: DeliveryWorker
    activation: ActivationService
    segments: SegmentService
    tokens: TokenStore
    services: list[Service]
    mounts: dict[str, ASGIApp]
    privacy: PrivacyParts | None = None
    syncs: SyncStore | None = None


def assemble(runtime: Runtime) -> Assembly:
    """Every part of ``runtime``'s serve process, wired for its roles: call it once per
    process and pass the :class:`Assembly` on (``segflow.server.run.serve`` does)."""
    settings, clock, data = runtime.settings, runtime.clock, runtime.settings.data_path
    privacy_compose.check_retention(settings)  # ConfigError when the rules read more history
    roles = parse_roles(settings.server.roles)
    # only a process with the ``process`` role writes the state (RocksDB: one writer; the
    # others read it through secondaries), and every reader here goes through its store
    # its readers may read a little stale state (api.state_refresh_ms); the change feeds catch
    # up at every read (_change_feed)
    processor = build_processor(
        settings,
        runtime.log,
        clock=clock,
        write="process" in roles,
        refresh_ms=settings.api.state_refresh_ms,
    )
    if roles & {"collect", "api"}:  # an HTTP server here: asyncio's short-lived cycles are
        processor.gc_policy.freeze = False  # for young collections, not a freeze (engine.md)
    reader = build_reader(settings, runtime.log, processor.store)
    warehouse = warehouse_backends.opener(settings)  # DuckDB file or PostgreSQL (engine)

    catalog = catalog_target(settings)  # catalog.sqlite, or the shared catalog (shared.dsn)
    audit = AuditLog(catalog)
    segments = SegmentService(
        DefinitionStore(catalog),
        warehouse=warehouse,
        clock=clock,
        audit=audit,
        reasons=score_reasons,
    )
    loader_feed, delivery_feed = _change_feed(processor), _change_feed(processor)
    loader = warehouse_backends.build_loader(settings, runtime.log, loader_feed, clock)
    guard = UrlGuard(settings.activate.allow_list)
    box = SecretBox.open(data, settings.activate.secrets_key)
    store = DeliveryStore(Path(data) / "delivery.sqlite", box=box)
    syncs = SyncStore(Path(data) / "syncs.sqlite", box=box)  # pulled syncs (docs/syncs.md)
    exports = ExportRoot(settings.activate.export_root or Path(data) / "exports")
    delivery = DeliveryWorker(
        store,
        delivery_feed,
        reader,
        guard=guard,
        clock=clock,
        poll_interval_ms=settings.activate.poll_interval_ms,
        feed_interval_ms=settings.activate.feed_interval_ms,
        retention_ms=settings.activate.delivered_retention_ms,
        file_sink=FileSink(exports=exports),
    )
    activation = ActivationService(
        store,
        guard=guard,
        lookup=reader,
        clock=clock,
        secret_overlap_ms=settings.activate.secret_overlap_ms,
        exports=exports,
    )
    tokens = TokenStore(catalog)
    ml = MlService(warehouse, clock, sink=processor, settings=settings.ml)
    log = settings.log
    privacy = privacy_compose.build(
        settings,
        clock,
        ingestor=runtime.ingestor,
        log=runtime.log,  # log.sqlite erases by position, Kafka by deleting keys
        processor=processor,
        loader=loader,
        delivery=store,
        audit=audit,
        segments=segments,
    )
    closer = _Closer(
        [
            *(processor.store.close, segments.store.close, store.close, tokens.close),
            *(audit.close, reader.close, loader_feed.close, delivery_feed.close),
        ]
    )
    closer.closers += [privacy.store.close, syncs.close]
    services: list[Service] = [closer]  # started first, so stopped last: closes the stores
    if "process" in roles:
        lease = _lease(runtime)
        if lease is not None:  # Kafka: a consumer group's share of the partitions
            processor.assignment = lease
            services.append(lease)
        services += [DefinitionWatcher(segments, processor.set_evaluator), processor]
    if "load" in roles:
        services.append(loader)
    if "activate" in roles:
        services.append(delivery)
    # log commit -> processor, processor commit -> delivery, across processes too
    services.append(wakeups.wire(roles, runtime.log, processor, delivery, state_path(settings)))
    # ML jobs read and write DuckDB (docs/warehouse.md); scores go into this process's processor
    if settings.warehouse.engine == "duckdb" and {"process", "load"} <= roles:
        services.append(ml)
    if {"process", "load"} <= roles:  # one process of a serve runs the syncs' schedule
        runner = SyncRunner(syncs, runtime.ingestor, clock=clock, lock_dir=Path(data) / "run")
        services.append(SyncSchedule(runner))
    if log.retention_ms is not None and "collect" in roles:
        retention = LogRetention(
            runtime.log,
            retention_ms=log.retention_ms,
            interval_s=log.retention_interval_s,
            required_groups=(settings.stream.group, LOADER_GROUP),
        )
        services.append(retention)
    # it asks the processor and the loader of this process (and erases from the log: by
    # position in log.sqlite, by deleting the records' keys on Kafka: docs/privacy.md)
    if {"process", "load"} <= roles:
        services.append(privacy.runner)  # started after, stopped before, the parts it asks
    elif "collect" in roles:  # the runner keeps the list in step where it runs; here, this
        refresh = SuppressionRefresh(
            privacy.store, privacy.suppressions, interval_s=settings.privacy.poll_interval_s
        )
        services.append(refresh)
    reach = _pipeline_reach(runtime, roles, processor, loader, closer)
    services += reach.services
    api_deps = ApiDeps(
        runtime=runtime,
        reader=reader,
        figures=reach.figures,
        sink=reach.sink,
        splitter=reach.splitter,
        loader=loader,
        activation=activation,
        segments=segments,
        tokens=tokens,
        warehouse=warehouse,
        catalog_path=catalog,
        audit=audit,
        privacy=privacy.service,
        syncs=syncs,
    )
    mounts: dict[str, ASGIApp] = {}
    if "api" in roles:
        api: ASGIApp = build_api(api_deps)
        if settings.api.rate_limit_per_s > 0:
            limits = settings.api
            api = TokenRateLimit(  # one limit for the server, shared by its HTTP workers
                api,
                CachedTokens(tokens),  # not a catalog query per request (segflow.api.auth)
                rate=limits.rate_limit_per_s,
                burst=limits.rate_limit_burst,
                shared=settings.data_path / "run" / "buckets-api.bin",
            )
        mounts["/api"] = KeepPath(api)
        mounts["/console"] = KeepPath(build_console(api_deps))
    supervised = roles != frozenset(ROLES)  # one process of several: /metrics merges them
    if supervised:
        services.append(MetricsPublisher(settings.data_path, REGISTRY))
    ops, started = ops_mounts(
        runtime, reader, reach.backfill_pending, activation.store, tokens, supervised
    )
    services.append(started)  # last: readiness starts once every service did
    mounts.update(ops)
    return Assembly(
        processor, loader, delivery, activation, segments, tokens, services, mounts, privacy, syncs
    )


@dataclass
class _Reach:
    """How the API of this process reaches the processor and the loader."""

    figures: FigureSource
    sink: AttributeSink
    splitter: Splitter
    services: list[Service]
    backfill_pending: Callable[[], bool]  # the /metrics gauge


def _pipeline_reach(
    runtime: Runtime,
    roles: frozenset[str],
    processor: Processor,
    loader: WarehouseLoader,
    closer: _Closer,
) -> _Reach:
    """In the process that runs them (``process`` and ``load``), the API calls the processor
    and the loader directly, and publishes their figures and runs the queued commands of
    other processes' APIs (``segflow.serving.snapshots``, ``segflow.server.commands``);
    elsewhere it reads those figures and queues those commands."""
    data = runtime.settings.data_path
    queue = CommandQueue(queue_path(data))
    closer.closers.append(queue.close)
    if {"process", "load"} <= roles:
        local = LocalFigures(processor, loader)
        runner = CommandRunner(queue, command_handlers(processor))
        services: list[Service] = [SnapshotWriter(data, local), runner]
        return _Reach(local, processor, processor, services, lambda: processor.backfill_pending)
    snapshot = SnapshotFigures(data)

    def backfill_pending() -> bool:
        figures = snapshot.figures()
        return figures is not None and figures.backfilling

    return _Reach(snapshot, QueuedSink(queue), QueuedSplitter(queue), [], backfill_pending)


def _change_feed(processor: Processor) -> StateChangeFeed:
    """The processor's change feed, reading the newest commit at every read: delivery reads
    it when the processor's bell rings (segflow.server.wakeups). On a RocksDB secondary (a
    process that does not write the state) its reader catches up before every read, while the
    process's other readers keep ``api.state_refresh_ms``: they share one secondary instance
    (segflow.stream.state.secondary), so the profile of a change the feed just handed out is
    read at least as new as the change without a catch-up per lookup (two per change were
    most of the ``activate`` child's time at 5,000 changes/s)."""
    from segflow.stream.state.rocksdb import RocksReadOnlyStore, open_reader

    store = processor.store
    if not isinstance(store, RocksReadOnlyStore) or not store.refresh_ms:
        return processor.change_feed()  # a writer, or readers that catch up every read
    return StateChangeFeed(open_reader(store.path, refresh_ms=0.0))


def _lease(runtime: Runtime) -> PartitionLease | None:
    """A member of the processors' consumer group when the log has groups (Kafka)."""
    make = getattr(runtime.log, "lease", None)
    if make is None:
        return None
    s = runtime.settings
    lease: PartitionLease = make(s.stream.group, session_timeout_ms=s.log.session_timeout_ms)
    return lease


class _Closer:
    name = "stores"

    def __init__(self, closers: list[Callable[[], None]]) -> None:
        self.closers = closers

    def start(self) -> None:
        return None

    def stop(self) -> None:
        for close in self.closers:
            close()
