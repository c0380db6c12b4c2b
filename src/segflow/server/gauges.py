"""Metrics read from the stores at scrape time: log size and end offsets, consumer lag per
group, the writer queue, dead letters, deliveries by destination and status, file sizes.

A Prometheus ``Collector``: nothing is counted on a hot path, every figure is read when
``/metrics`` is scraped (a few indexed SQLite queries; the delivery counts scan the queue's
status index, so their cost grows with ``activate.delivered_retention_ms``).

>>> import os, tempfile
>>> from segflow.log.sqlite import SqliteEventLog
>>> data = tempfile.mkdtemp()
>>> log = SqliteEventLog(os.path.join(data, "log.sqlite"), partitions=2)
>>> names = [m.name for m in StoreGauges(data, log).collect()]
>>> "segflow_consumer_lag_records" in names, "segflow_store_size_bytes" in names
(True, True)
>>> log.close()
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from segflow.activate.store import DeliveryStore
from segflow.log.base import ServedLog

STORES = {
    "catalog": ("catalog.sqlite",),
    "log": ("log.sqlite",),
    "state": ("state", "state.sqlite"),  # RocksDB's directory, or the SQLite file
    "delivery": ("delivery.sqlite",),
    "warehouse": ("warehouse.duckdb",),
}
ALWAYS_GROUPS = ("processor", "warehouse")


def file_bytes(path: Path) -> int:
    """Size of a store on disk with its write-ahead file (SQLite ``-wal``, DuckDB ``.wal``); a
    directory's (RocksDB: SST files, WAL, MANIFEST) is the sum of its files."""
    if path.is_dir():
        return sum(file_bytes(p) for p in path.iterdir())
    total = 0
    for suffix in ("", "-wal", ".wal"):
        with contextlib.suppress(OSError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total


def consumer_lag(log: ServedLog) -> dict[str, int]:
    """Records each consumer group has still to read, summed over partitions (the groups the
    log knows of, when its driver lists them, and segflow's own)."""
    end = log.end_offsets()
    listed = getattr(log, "consumer_groups", None)
    groups = sorted({*ALWAYS_GROUPS, *(listed() if listed is not None else ())})
    out = {}
    for group in groups:
        done = log.committed(group)
        out[group] = sum(max(0, e - done.get(p, 0)) for p, e in end.items())
    return out


class StoreGauges(Collector):
    """The scrape-time metrics of one data directory (see the module docstring)."""

    def __init__(
        self,
        data_dir: str | Path,
        log: ServedLog,
        delivery: DeliveryStore | None = None,
        backfill_pending: Callable[[], bool] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log = log
        self.delivery = delivery
        self.backfill_pending = backfill_pending

    def collect(self) -> Iterator[Metric]:
        yield from self._log()
        yield from self._files()
        if self.delivery is not None:
            yield self._deliveries(self.delivery)
        if self.backfill_pending is not None:
            pending = GaugeMetricFamily(
                "segflow_processor_backfill_pending",
                "1 while the processor rebuilds rule state for a changed rule set.",
            )
            pending.add_metric([], 1.0 if self.backfill_pending() else 0.0)
            yield pending

    def _log(self) -> Iterator[Metric]:
        stats = self.log.stats()
        appended = CounterMetricFamily(
            "segflow_log_appended_records",
            "Records ever appended to the log (sum of the partitions' end offsets).",
            labels=["partition"],
        )
        for partition, end in sorted(stats["end_offsets"].items()):
            appended.add_metric([str(partition)], float(end))
        yield appended
        yield _gauge("segflow_log_pending_events", "Events queued for the log's writer (bounded by log.max_pending_events).", stats["pending_events"])  # fmt: skip
        yield _gauge("segflow_log_dead_letters", "Refused payloads kept in the log's dead letters.", stats["dead_letters"])  # fmt: skip
        if "dedupe_memory_ids" in stats:  # the embedded log's dedupe index
            yield _gauge("segflow_log_dedupe_memory_ids", "Message ids of the dedupe window this process holds in memory (bounded by about two ranges of log.dedupe_memory_ids).", stats["dedupe_memory_ids"])  # fmt: skip
            yield _gauge("segflow_log_dedupe_runs", "Sealed runs of the dedupe index on disk (DATA_DIR/log.dedupe/).", stats["dedupe_runs"])  # fmt: skip
        path = getattr(self.log, "path", None)  # the embedded log's file (a Kafka log has none)
        if path is not None:
            yield _gauge("segflow_log_size_bytes", "Size of log.sqlite with its write-ahead file.", file_bytes(path))  # fmt: skip
        lag = GaugeMetricFamily(
            "segflow_consumer_lag_records",
            "Records a consumer group has still to read (log end offsets minus committed offsets).",
            labels=["group"],
        )
        for group, records in consumer_lag(self.log).items():
            lag.add_metric([group], float(records))
        yield lag

    def _files(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily(
            "segflow_store_size_bytes",
            "Size of each store of the data directory, with its write-ahead file.",
            labels=["store"],
        )
        for store, names in STORES.items():
            size = sum(file_bytes(self.data_dir / name) for name in names)
            sizes.add_metric([store], float(size))
        yield sizes

    def _deliveries(self, store: DeliveryStore) -> Metric:
        family = GaugeMetricFamily(
            "segflow_deliveries",
            "Deliveries in the queue by destination and status (delivered rows are kept for activate.delivered_retention_ms).",
            labels=["destination", "status"],
        )
        for dest in store.destinations():
            stats = store.stats(dest.name)
            for status in ("pending", "delivered", "dead", "skipped"):
                family.add_metric([dest.name, status], float(getattr(stats, status)))
        return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], float(value))
    return family
