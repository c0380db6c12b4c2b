"""Opening the configured log driver (``[log] driver``): ``sqlite`` (embedded) or ``kafka``.

>>> import tempfile
>>> from segflow.config import load_settings
>>> log = open_event_log(load_settings(overrides={"server": {"data_dir": tempfile.mkdtemp()}}))
>>> type(log).__name__, log.partitions
('SqliteEventLog', 8)
>>> log.close()
"""

from __future__ import annotations

from segflow.clock import Clock
from segflow.config import Settings
from segflow.errors import ConfigError
from segflow.log.base import ServedLog

DRIVERS = ("sqlite", "kafka")


def open_event_log(settings: Settings, *, clock: Clock | None = None) -> ServedLog:
    """The event log of ``settings``: ``DATA_DIR/log.sqlite``, or the Kafka topic
    ``log.topic`` on ``log.bootstrap_servers`` with its dedupe table in ``DATA_DIR/dedupe.sqlite``."""
    s = settings.log
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    if s.driver == "sqlite":
        from segflow.log.sqlite import SqliteEventLog

        return SqliteEventLog(
            data / "log.sqlite",
            partitions=s.partitions,
            dedupe_window_ms=s.dedupe_window_ms,
            max_pending_events=s.max_pending_events,
            clock=clock,
        )
    if s.driver == "kafka":
        try:
            from segflow.log.kafka import KafkaEventLog
        except ImportError as exc:
            raise ConfigError(
                "the kafka log driver needs confluent-kafka: pip install 'segflow[kafka]'"
            ) from exc
        from segflow.log.reservations import ReservationStore

        return KafkaEventLog(
            s.bootstrap_servers,
            dedupe=ReservationStore(data / "dedupe.sqlite", window_ms=s.dedupe_window_ms),
            topic=s.topic,
            partitions=s.partitions,
            config=s.kafka,
            max_pending_events=s.max_pending_events,
            clock=clock,
        )
    raise ConfigError(f"unknown log driver {s.driver!r} (available: {', '.join(DRIVERS)})")
