"""Metrics fed a batch at a time read as the same histogram as one observation at a time."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from segflow.telemetry.metrics import BatchHistogram

BOUNDS = (0.001, 0.01, 0.1, 1.0)


def test_a_batch_histogram_exposes_what_prometheus_would() -> None:
    values = [0.0, 0.001, 0.0015, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 30.0, 0.001]
    theirs = CollectorRegistry()
    reference = Histogram("x_seconds", "doc", ["segment", "kind"], buckets=BOUNDS, registry=theirs)
    for v in values:
        reference.labels(segment="s", kind="event").observe(v)
    ours = CollectorRegistry()
    batched = BatchHistogram("x_seconds", "doc", ("segment", "kind"), BOUNDS)
    ours.register(batched)
    batched.add(("s", "event"), np.asarray(values[:4]))
    batched.add(("s", "event"), np.asarray(values[4:]))  # added up across batches
    assert generate_latest(ours) == generate_latest(
        theirs
    )  # segflow.telemetry.metrics: no *_created
