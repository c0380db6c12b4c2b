"""``segflow process``: run the stream processor alone on a data directory."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import msgspec
import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import counting

if TYPE_CHECKING:
    from segflow.config import Settings
    from segflow.log.lease import PartitionLease
    from segflow.stream.processor import Processor


def process(
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
    until_idle: bool = typer.Option(
        False, "--until-idle", help="exit once every partition is caught up"
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="records per partition per batch"
    ),
) -> None:
    """Consume the log into profile state (identity, traits, segments, timers) until stopped."""
    from segflow.catalog.db import catalog_target
    from segflow.log.drivers import open_event_log
    from segflow.segments.service import DefinitionWatcher, SegmentService
    from segflow.segments.store import DefinitionStore
    from segflow.stream.compose import build_processor

    settings = resolve_settings(data_dir, config)
    if batch_size is not None:
        settings = msgspec.structs.replace(
            settings, stream=msgspec.structs.replace(settings.stream, batch_size=batch_size)
        )
    log = open_event_log(settings)
    processor = build_processor(settings, log)
    lease = _join_group(processor, settings)
    definitions = DefinitionStore(catalog_target(settings))
    watcher = DefinitionWatcher(SegmentService(definitions), processor.set_evaluator)
    watcher.refresh()  # the segments and traits of the catalog, backfilled when they changed
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    total = 0
    try:
        if until_idle:
            with counting("processing the log", "events") as advance:
                while not stop.is_set() and (
                    (n := processor.run_once()) > 0 or processor.backfilling()
                ):
                    total += n
                    advance(n)
        else:
            watcher.start()
            processor.start()
            stop.wait()
            processor.stop()
    finally:
        if lease is not None:
            lease.stop()
        watcher.stop()
        definitions.close()
        processor.store.close()
        log.close()
    conflicts = f" ({processor.conflicts} optimistic conflicts)" if processor.conflicts else ""
    typer.echo((f"processed {total} events" if until_idle else "stopped") + conflicts)


def _join_group(processor: Processor, settings: Settings) -> PartitionLease | None:
    """On Kafka: join the processors' consumer group and wait (up to 30 s) for a share."""
    make = getattr(processor.log, "lease", None)
    if make is None:
        return None
    lease: PartitionLease = make(
        settings.stream.group, session_timeout_ms=settings.log.session_timeout_ms
    )
    lease.start()
    processor.assignment = lease
    deadline = time.monotonic() + 30
    while lease.generations == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return lease


def register(app: typer.Typer) -> None:
    app.command("process")(process)
