"""Process-wide Prometheus metrics: what every part counts as it works.

The parts increment these where they work (the collector per request, the processor per
batch, the loader per micro-batch, ML per job); ``/metrics`` (``segflow.server.ops``) renders
them in the Prometheus text format together with what is read from the stores at scrape time
(log size, consumer lag, deliveries by status: ``segflow.server.gauges``).

Hot paths pay per request or per batch, never per event: a labelled child costs ~0.5-2 µs per
``inc``/``observe`` on this machine's Python, so per-event timings are sampled
(:data:`RULE_EVAL_SAMPLE`). docs/operations.md lists every metric with its labels.

>>> before = EVENTS_ACCEPTED.labels(source="doc")._value.get()
>>> EVENTS_ACCEPTED.labels(source="doc").inc(3)
>>> EVENTS_ACCEPTED.labels(source="doc")._value.get() - before
3.0
>>> b"segflow_collect_events_accepted_total" in render(REGISTRY)
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: they double every counter's output
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, cpu, open fds

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_EVAL_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05,
)  # fmt: skip
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0)

# -- collection ------------------------------------------------------------------------------
EVENTS_RECEIVED = Counter(
    "segflow_collect_events_received",
    "Messages received in authenticated requests, by source.",
    ["source"],
    registry=REGISTRY,
)
EVENTS_ACCEPTED = Counter(
    "segflow_collect_events_accepted",
    "Messages durably appended to the log (new, not duplicates), by source.",
    ["source"],
    registry=REGISTRY,
)
EVENTS_DUPLICATE = Counter(
    "segflow_collect_events_duplicate",
    "Messages acknowledged as duplicates of a messageId in the dedupe window, by source.",
    ["source"],
    registry=REGISTRY,
)
EVENTS_REFUSED = Counter(
    "segflow_collect_events_refused",
    "Messages refused (dead-lettered), by source, error code and top-level field.",
    ["source", "reason", "field"],
    registry=REGISTRY,
)
REQUESTS_REFUSED = Counter(
    "segflow_http_requests_refused",
    "Whole requests refused before ingestion (bad key, too large, rate limited, overload), by app and error code.",
    ["app", "reason"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "segflow_http_request_duration_seconds",
    "HTTP request latency, by app (collect, admin, console, ops), route template, method and status.",
    ["app", "route", "method", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)

# -- processing ------------------------------------------------------------------------------
PROCESSOR_EVENTS = Counter(
    "segflow_processor_events",
    "Events processed (committed with their state); rate() of it is events/s.",
    ["group"],
    registry=REGISTRY,
)
PROCESSOR_DUPLICATES = Counter(
    "segflow_processor_duplicates",
    "Records dropped because their partition processed their message id within the dedupe"
    " window (segflow.stream.dedupe: a duplicate the log let through).",
    ["group"],
    registry=REGISTRY,
)
PROCESSOR_BATCH = Histogram(
    "segflow_processor_batch_duration_seconds",
    "Time to process and commit one processor batch.",
    ["group"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RULE_EVAL = Histogram(
    "segflow_rule_evaluation_seconds",
    "Time to evaluate every segment rule for one event or timer (sampled: 1 in RULE_EVAL_SAMPLE).",
    buckets=_EVAL_BUCKETS,
    registry=REGISTRY,
)
RULE_EVAL_SAMPLE = 64  # a power of two: the handler times one evaluation in this many
MEMBERSHIPS = Counter(
    "segflow_memberships",
    "Membership changes committed by the processor, by segment and kind (entered, exited).",
    ["segment", "kind"],
    registry=REGISTRY,
)


class BatchHistogram(Collector):
    """A labelled histogram fed a whole array of observations at once (``add``): a bucket
    count per bound, computed with numpy. The processor observes every membership change of
    a batch (hundreds of thousands with a hundred segments); one ``Histogram.observe`` per
    change was a fifth of its time at 100 rules (py-spy)."""

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], bounds: tuple[float, ...]
    ) -> None:
        self.name, self.documentation, self.label_names = name, documentation, labels
        self.bounds = np.asarray(bounds, dtype=float)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], np.ndarray] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def add(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        """Observe every value of ``values`` (seconds) under ``labels``."""
        found = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1
        )
        total = float(values.sum())
        with self._lock:
            if labels in self._counts:
                self._counts[labels] += found
                self._sums[labels] += total
            else:
                self._counts[labels] = found.astype(np.int64)
                self._sums[labels] = total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.label_names))
        with self._lock:
            counts = {k: v.copy() for k, v in self._counts.items()}
            sums = dict(self._sums)
        for labels, found in sorted(counts.items()):
            cumulative = np.cumsum(found)
            buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative, strict=False)]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(labels), buckets, sums[labels])
        yield family


def _le(bound: float) -> str:
    return repr(float(bound))


FRESHNESS = BatchHistogram(
    "segflow_membership_freshness_seconds",
    "Event acknowledgement (kind=event; kind=backfill for events that happened over an hour "
    "before they arrived) or timer due time (kind=timer) to the commit of the membership "
    "change it caused, by segment.",
    ("segment", "kind"),
    _LATENCY_BUCKETS,
)
REGISTRY.register(FRESHNESS)

# -- jobs ------------------------------------------------------------------------------------
JOB_DURATION = Histogram(
    "segflow_job_duration_seconds",
    "Duration of background jobs: loader micro-batches (job=warehouse_load) and ML jobs (job=ml_<job>).",
    ["job", "status"],
    buckets=_JOB_BUCKETS,
    registry=REGISTRY,
)
LOADER_EVENTS = Counter(
    "segflow_loader_events_loaded",
    "Events inserted into the warehouse by the loader.",
    registry=REGISTRY,
)


def render(registry: CollectorRegistry) -> bytes:
    """``registry`` in the Prometheus text exposition format (version 0.0.4)."""
    return generate_latest(registry)
