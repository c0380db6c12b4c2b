"""What only the Kafka driver has: dedupe reservations in flight, partition leases that
rebalance when a member joins or leaves (on a real Tansu broker)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.kafka import Broker, kafka_broker
from tests.support.wait import until

from segflow.log.dedupe import dedupe_key
from segflow.log.exceptions import DuplicateInFlight
from segflow.spec.events import Event, decode_event

__all__ = ["kafka_broker"]


@pytest.fixture
def kafka_log(kafka_broker: Broker, tmp_path: Path) -> Iterator[Any]:
    from segflow.log.kafka import KafkaEventLog
    from segflow.log.reservations import ReservationStore

    store = ReservationStore(tmp_path / "dedupe.sqlite", window_ms=3_600_000)
    log = KafkaEventLog(
        kafka_broker.bootstrap, dedupe=store, topic=f"k-{uuid.uuid4().hex[:8]}", partitions=4
    )
    yield log
    log.close()


def event(message_id: str) -> Event:
    return Event(type="track", message_id=message_id, source_id="s", timestamp_ms=5,
                 received_at_ms=5, user_id="u1", event="E")  # fmt: skip


def test_a_message_id_in_flight_elsewhere_is_refused_for_now(kafka_log: Any) -> None:
    store = kafka_log._dedupe
    key = dedupe_key("s", "m1")
    store.reserve([(key, 5)], now_ms=int(time.time() * 1000))  # another collector appends it
    with pytest.raises(DuplicateInFlight):
        kafka_log.append([event("m1"), event("m2")])
    assert kafka_log.end_offsets() == {0: 0, 1: 0, 2: 0, 3: 0}  # nothing of the request stored
    store.release([key])  # that append failed: the retry stores both
    positions = kafka_log.append([event("m1"), event("m2")])
    assert None not in positions and kafka_log.append([event("m2")]) == [None]


@pytest.mark.long  # ~11 s of session timeouts (make test-long, CI)
def test_leases_share_the_partitions_and_rebalance(kafka_log: Any) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = kafka_log.lease(group, session_timeout_ms=6000)
    first.start()
    second = kafka_log.lease(group, session_timeout_ms=6000)
    try:
        until(lambda: set(first.partitions()) == {0, 1, 2, 3})
        second.start()
        until(
            lambda: bool(first.partitions()) and bool(second.partitions())
            and set(first.partitions()) | set(second.partitions()) == {0, 1, 2, 3}
        )  # fmt: skip
        assert not set(first.partitions()) & set(second.partitions())
    finally:
        second.stop()
    until(lambda: set(first.partitions()) == {0, 1, 2, 3})  # a leaving member's share moves
    kafka_log.commit(group, {0: 7})  # through the member, from its own thread
    until(lambda: kafka_log.committed(group)[0] == 7)
    first.stop()


def test_open_event_log_keeps_reservations_in_postgres_with_shared_dsn(
    kafka_broker: Broker, postgres_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    from segflow.config import load_settings
    from segflow.log.drivers import open_event_log
    from segflow.log.reservations_pg import TABLE, PgReservationStore

    schema = f"t_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        env={},
        overrides={
            "server": {"data_dir": str(tmp_path)},
            "log": {"driver": "kafka", "bootstrap_servers": kafka_broker.bootstrap,
                    "topic": f"k-{uuid.uuid4().hex[:8]}", "partitions": 2},
            "shared": {"dsn": postgres_dsn, "schema": schema},
        },
    )  # fmt: skip
    log = open_event_log(settings)
    try:
        assert isinstance(log._dedupe, PgReservationStore)  # type: ignore[attr-defined]
        assert log.append([event("m1"), event("m2")]).count(None) == 0
        assert log.append([event("m1"), event("m3")])[0] is None  # deduplicated in PostgreSQL
    finally:
        log.close()
    assert not (tmp_path / "dedupe.sqlite").exists()
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        stored = con.execute(f'SELECT count(*) FROM "{schema}".{TABLE} WHERE stored').fetchone()
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
    assert stored == (3,)


def test_open_event_log_keeps_reservations_in_sqlite_without_shared_dsn(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    from segflow.config import load_settings
    from segflow.log.drivers import open_event_log
    from segflow.log.reservations import ReservationStore

    settings = load_settings(
        env={},
        overrides={
            "server": {"data_dir": str(tmp_path)},
            "log": {"driver": "kafka", "bootstrap_servers": kafka_broker.bootstrap,
                    "topic": f"k-{uuid.uuid4().hex[:8]}", "partitions": 2},
        },
    )  # fmt: skip
    log = open_event_log(settings)
    try:
        assert isinstance(log._dedupe, ReservationStore)  # type: ignore[attr-defined]
    finally:
        log.close()
    assert (tmp_path / "dedupe.sqlite").exists()


def one_partition_log(broker: Broker, root: Path, topic: str, *, sealed: bool) -> Any:
    from segflow.log.kafka import KafkaEventLog
    from segflow.log.keys import SqliteKeyTable
    from segflow.log.reservations import ReservationStore
    from segflow.log.shredding import Shredder

    return KafkaEventLog(
        broker.bootstrap,
        dedupe=ReservationStore(root / f"dedupe-{sealed}.sqlite", window_ms=3_600_000),
        topic=topic,
        partitions=1,
        shredder=Shredder(SqliteKeyTable(root / "keys.sqlite")) if sealed else None,
    )


def by(user: str, message_id: str) -> Event:
    return Event(type="track", message_id=message_id, source_id="s", timestamp_ms=5,
                 received_at_ms=5, user_id=user, event="E")  # fmt: skip


def test_a_sealed_log_reads_plain_records_from_before_and_skips_shredded_ones(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    topic = f"sealed-{uuid.uuid4().hex[:8]}"
    plain = one_partition_log(kafka_broker, tmp_path, topic, sealed=False)
    plain.append([by("old", "m0")])  # written before sealing: plain msgpack
    plain.close()
    log = one_partition_log(kafka_broker, tmp_path, topic, sealed=True)
    try:
        assert log.append([by("ann", "m1"), by("bob", "m2"), by("ann", "m3")]) == [
            (0, 1), (0, 2), (0, 3)
        ]  # fmt: skip
        assert [r.event.message_id for r in log.read(0, 0)] == ["m0", "m1", "m2", "m3"]
        assert log.readable_ends() == {0: 4}
        assert log.shred([("user_id", "ann")]) == 1
        assert log.shred([("user_id", "ann")]) == 0  # idempotent
        assert [r.event.message_id for r in log.read(0, 0)] == ["m0", "m2"]
        assert [r.event.message_id for r in log.read(0, 1, 1)] == ["m2"]  # past the erased
        assert log.stats()["erased"] == 3
        assert [decode_event(v).message_id for _, v in log.read_encoded(0, 1)] == ["m2"]
        # the last record is erased: no consumer's offset passes it, so the barrier stops
        # before it; the end offset is still the broker's
        assert log.read(0, 3) == [] and log.readable_ends() == {0: 3}
        assert log.end_offsets() == {0: 4}
        log.append([by("ann", "m4")])  # the person comes back: a new key, readable
        assert [r.event.message_id for r in log.read(0, 3)] == ["m4"]
    finally:
        log.close()


def test_dead_letters_are_sealed_and_shredded_by_what_they_hold(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    from segflow.log.base import DeadLetter

    log = one_partition_log(kafka_broker, tmp_path, f"dl-{uuid.uuid4().hex[:8]}", sealed=True)
    try:
        letters = [
            DeadLetter(source_id="s", received_at_ms=1, field="event", reason="missing",
                       payload=b'{"userId": "%s"}' % who)
            for who in (b"ann-4711", b"bob-4712")
        ]  # fmt: skip
        log.dead_letter(letters)
        assert sorted(d.payload for d in log.dead_letters()) == sorted(x.payload for x in letters)
        assert log.shred_dead_letters(lambda payload: b"ann-4711" in payload) == 1
        assert [d.payload for d in log.dead_letters()] == [letters[1].payload]
    finally:
        log.close()
