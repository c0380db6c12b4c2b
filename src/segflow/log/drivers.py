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
from segflow.log.keys import KeyTable, SqliteKeyTable
from segflow.log.reservations import ReservationStore, ReservationTable
from segflow.log.shredding import Shredder

DRIVERS = ("sqlite", "kafka")


def open_event_log(settings: Settings, *, clock: Clock | None = None) -> ServedLog:
    """The event log of ``settings``: ``DATA_DIR/log.sqlite``, or the Kafka topic
    ``log.topic`` on ``log.bootstrap_servers``.

    The Kafka driver's dedupe reservations (:mod:`segflow.log.reservations`) are in
    ``DATA_DIR/dedupe.sqlite``, shared by the collectors of one host, or, when ``shared.dsn`` is
    set, in the table ``dedupe_reservations`` of ``shared.schema`` on that PostgreSQL database,
    shared by the collectors of every host (:mod:`segflow.log.reservations_pg`). The embedded
    driver deduplicates inside its own append transaction and ignores ``shared.dsn``.

    The Kafka driver seals its records (crypto-shredding, :mod:`segflow.log.shredding`) under
    keys kept in ``DATA_DIR/keys.sqlite``, or with ``shared.dsn`` in the table ``shred_keys``
    of ``shared.schema`` (:mod:`segflow.log.keys_pg`).
    """
    s = settings.log
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    if s.driver == "sqlite":
        from segflow.log.sqlite import SqliteEventLog

        return SqliteEventLog(
            data / "log.sqlite",
            partitions=s.partitions,
            dedupe_window_ms=s.dedupe_window_ms,
            dedupe_memory_ids=s.dedupe_memory_ids,
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
        dedupe = _reservations(settings)
        try:
            shredder = Shredder(open_key_table(settings))
        except BaseException:
            dedupe.close()
            raise
        try:
            return KafkaEventLog(
                s.bootstrap_servers,
                dedupe=dedupe,
                topic=s.topic,
                partitions=s.partitions,
                config=s.kafka,
                max_pending_events=s.max_pending_events,
                clock=clock,
                shredder=shredder,
            )
        except BaseException:
            dedupe.close()
            shredder.table.close()
            raise
    raise ConfigError(f"unknown log driver {s.driver!r} (available: {', '.join(DRIVERS)})")


def open_key_table(settings: Settings) -> KeyTable:
    """The Kafka driver's crypto-shredding keys: ``DATA_DIR/keys.sqlite``, or the table
    ``shred_keys`` of ``shared.schema`` with ``shared.dsn``."""
    if settings.shared.dsn:
        from segflow.log.keys_pg import PgKeyTable

        return PgKeyTable(settings.shared.dsn, schema=settings.shared.schema)
    return SqliteKeyTable(settings.data_path / "keys.sqlite")


def _reservations(settings: Settings) -> ReservationTable:
    window_ms = settings.log.dedupe_window_ms
    if settings.shared.dsn:
        from segflow.log.reservations_pg import PgReservationStore

        return PgReservationStore(
            settings.shared.dsn, schema=settings.shared.schema, window_ms=window_ms
        )
    return ReservationStore(settings.data_path / "dedupe.sqlite", window_ms=window_ms)
