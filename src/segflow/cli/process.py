"""``segflow process``: run the stream processor alone on a data directory."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import msgspec
import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import counting


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
    from segflow.log.sqlite import open_log
    from segflow.segments.service import DefinitionWatcher, SegmentService
    from segflow.segments.store import DefinitionStore
    from segflow.stream.compose import build_processor

    settings = resolve_settings(data_dir, config)
    if batch_size is not None:
        settings = msgspec.structs.replace(
            settings, stream=msgspec.structs.replace(settings.stream, batch_size=batch_size)
        )
    log = open_log(settings.data_path, partitions=settings.log.partitions)
    processor = build_processor(settings, log)
    definitions = DefinitionStore(settings.data_path / "catalog.sqlite")
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
            processor.run_forever(stop)
    finally:
        watcher.stop()
        definitions.close()
        processor.store.close()
        log.close()
    typer.echo(f"processed {total} events" if until_idle else "stopped")


def register(app: typer.Typer) -> None:
    app.command("process")(process)
