"""``/metrics`` for the whole supervised server: every process's counters, merged at scrape.

Under ``segflow serve``'s supervisor the metrics of :mod:`segflow.telemetry.metrics` are counted where
the work happens: the collector's in each HTTP worker, the processor's and the loader's in the
``pipeline`` child, delivery's in ``activate``. Each child publishes its samples every
``interval_s`` (:class:`MetricsPublisher`: ``DATA_DIR/run/metrics/PID.json``, written
atomically); the HTTP worker that answers a scrape merges the others' files with its own live
samples (:func:`merged`): counters and histograms of the same name and labels are summed
(the server's total), gauges (``process_*``: memory, CPU, file descriptors) get a ``pid``
label, one series per process. A file whose process is gone is skipped and removed, so a
restarted child's counters start again from zero (Prometheus's ``rate`` reads that as the
counter reset it is). Samples are at most ``interval_s`` old.

>>> from prometheus_client import CollectorRegistry, Counter
>>> here, there = CollectorRegistry(), CollectorRegistry()
>>> for registry, n in ((here, 2), (there, 3)):
...     Counter("jobs", "Jobs.", ["kind"], registry=registry).labels(kind="a").inc(n)
>>> b'jobs_total{kind="a"} 5.0' in merged(here, [samples_of(there)])
True
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from segflow.background import BackgroundLoop
from segflow.serving.status import alive

log = logging.getLogger(__name__)

METRICS_DIR = Path("run") / "metrics"

# one family: name, type, help, [(sample name, labels, value)]
Family = tuple[str, str, str, list[tuple[str, dict[str, str], float]]]


def samples_of(registry: CollectorRegistry) -> list[Family]:
    """The registry's families as plain data (what a publisher writes)."""
    return [
        (m.name, m.type, m.documentation, [(s.name, dict(s.labels), s.value) for s in m.samples])
        for m in registry.collect()
    ]


class _Merged(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def merged(own: CollectorRegistry, others: Iterable[list[Family]], own_pid: int = 0) -> bytes:
    """``own``'s live samples plus the other processes' (module docstring), in the Prometheus
    text format."""
    order: list[str] = []
    kinds: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for pid, families in [(own_pid, samples_of(own)), *((None, f) for f in others)]:
        for name, kind, doc, samples in families:
            if name not in kinds:
                order.append(name)
                kinds[name] = (kind, doc)
                values[name] = {}
            into = values[name]
            for sample, labels, value in samples:
                if kind == "gauge":  # a process's own figure: one series per process
                    labels = {**labels, "pid": str(pid if pid is not None else labels.get("pid"))}
                key = (sample, tuple(sorted(labels.items())))
                into[key] = into.get(key, 0.0) + value
    out = []
    for name in order:
        kind, doc = kinds[name]
        metric = Metric(name, doc, kind)
        for (sample, pairs), value in values[name].items():
            metric.add_sample(sample, dict(pairs), value)
        out.append(metric)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(out))
    return generate_latest(registry)


_encoder = msgspec.json.Encoder()


def publish(data_dir: str | Path, registry: CollectorRegistry, pid: int | None = None) -> None:
    """Write this process's samples for the scraping workers (atomically)."""
    pid = os.getpid() if pid is None else pid
    folder = Path(data_dir) / METRICS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # each gauge sample says whose it is (the merge would otherwise not know)
    families = [
        (n, k, d, [(s, {**labels, "pid": str(pid)} if k == "gauge" else labels, v) for s, labels, v in ss])
        for n, k, d, ss in samples_of(registry)
    ]  # fmt: skip
    tmp = folder / f".{pid}.json.tmp"
    tmp.write_bytes(_encoder.encode(families))
    os.replace(tmp, folder / f"{pid}.json")


def published(data_dir: str | Path, skip_pid: int | None = None) -> list[list[Family]]:
    """The samples other live processes of the data directory published; files of processes
    that are gone are removed."""
    folder = Path(data_dir) / METRICS_DIR
    found: list[list[Family]] = []
    if not folder.is_dir():
        return found
    for path in folder.glob("*.json"):
        try:
            pid = int(path.stem)
        except ValueError:
            continue
        if pid == skip_pid:
            continue
        if not alive(pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        try:
            found.append(msgspec.json.decode(path.read_bytes(), type=list[Any]))
        except (OSError, msgspec.DecodeError):  # replaced or half-read: next scrape has it
            continue
    return found


class MetricsPublisher(BackgroundLoop):
    """A service of each supervised child: publishes ``registry`` every ``interval_s``; the
    file is removed when it stops."""

    name = "metrics-publisher"

    def __init__(
        self, data_dir: str | Path, registry: CollectorRegistry, interval_s: float = 1.0
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.registry = registry
        self.interval_s = interval_s

    def tick(self) -> None:
        publish(self.data_dir, self.registry)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(OSError):
            (self.data_dir / METRICS_DIR / f"{os.getpid()}.json").unlink()


__all__ = ["MetricsPublisher", "merged", "publish", "published", "samples_of"]
