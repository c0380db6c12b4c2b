"""A retried event the Kafka driver appended twice is counted once (a real Tansu broker).

The Kafka collector reserves a message id, produces, and confirms after the broker's ack; one
that dies between the ack and the confirm leaves the retry free to be appended again. Here
the second append goes through a dedupe table that never learnt of the first (what the lost
confirm amounts to), so the topic really holds the event twice; the processor, wired from the
kafka settings as ``segflow serve`` wires it, counts it once."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.kafka import Broker, kafka_broker
from tests.support.wait import until

from segflow.clock import ManualClock
from segflow.config import load_settings
from segflow.log.kafka import KafkaEventLog
from segflow.log.reservations import ReservationStore
from segflow.rules import compile_segments
from segflow.spec.events import Event
from segflow.stream import Processor, ProfileReader, SqliteStateStore
from segflow.stream.compose import processor_settings

__all__ = ["kafka_broker"]
T0 = 1_700_000_000_000


def viewed(message_id: str, received_at: int) -> Event:
    return Event(type="track", message_id=message_id, source_id="web", timestamp_ms=T0,
                 received_at_ms=received_at, user_id="u1", event="Viewed")  # fmt: skip


def test_a_retry_appended_twice_by_kafka_collectors_is_counted_once(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    topic = f"dedupe-{uuid.uuid4().hex[:8]}"
    logs = [
        KafkaEventLog(
            kafka_broker.bootstrap,
            dedupe=ReservationStore(tmp_path / f"dedupe-{i}.sqlite", window_ms=3_600_000),
            topic=topic,
            partitions=2,
        )
        for i in range(2)
    ]
    store = SqliteStateStore(tmp_path / "state.sqlite")
    try:
        assert logs[0].append([viewed("m1", T0)]) != [None]
        assert logs[1].append([viewed("m1", T0 + 2_000)]) != [None]  # the broker has it twice
        assert sum(logs[0].end_offsets().values()) == 2
        settings = load_settings(overrides={"log": {"driver": "kafka"}})
        assert processor_settings(settings).dedupe_window_ms == settings.log.dedupe_window_ms
        program = compile_segments({"twice": 'did "Viewed" at least 2 times'})
        proc = Processor(
            logs[0], store, program, ManualClock(T0 + 5_000), processor_settings(settings)
        )
        consumed = [0]

        def drained() -> bool:
            consumed[0] += proc.run_once()
            return consumed[0] >= 2

        until(drained, 30, "the processor consumed both records")
        reader = ProfileReader(store.reader(), logs[0])
        profile = reader.lookup("user_id", "u1")
        assert profile is not None and profile.members == []
        logs[1].append([viewed("m2", T0 + 3_000)])  # a real second view counts
        until(lambda: proc.run_once() > 0, 30, "the processor consumed m2")
        profile = reader.lookup("user_id", "u1")
        assert profile is not None and profile.members == ["twice"]
    finally:
        store.close()
        for log in logs:
            log.close()
