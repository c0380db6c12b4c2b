"""The canary test on the Kafka driver (a real Tansu broker): a deletion crypto-shreds the
person's records, so after the regulation no byte of the canary is readable anywhere.

Every part of a serve process runs in this process (the ``composed`` fixture) on the Kafka
log, as ``segflow serve`` wires it: records are sealed under per-person keys
(``keys.sqlite``). A canary person and a control person send events (identifiers, strings in
properties and traits) and a refused message (a dead letter); the canary is in a segment and
exported to a file destination in the data directory. One regulation naming the canary's
email deletes it. Then the canary's bytes are searched in **every raw record of both topics**
(read with confluent-kafka, values and keys), in what the log gives its readers (this process
and a fresh one), and in every file of the data directory (state, warehouse, delivery,
catalog, the key table); the control's data must still be readable everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.privacy.test_canary import person
from tests.support.kafka import Broker, kafka_broker

__all__ = ["kafka_broker"]


def traffic(p: dict[str, str]) -> list[dict[str, Any]]:
    mid = uuid.uuid4().hex
    return [
        {"type": "page", "anonymousId": p["anon"], "name": "Home", "messageId": f"{mid}-1"},
        {
            "type": "identify",
            "anonymousId": p["anon"],
            "userId": p["user"],
            "messageId": f"{mid}-2",
            "traits": {"email": p["email"], "note": f"says {p['trait']}"},
        },
        {
            "type": "track",
            "userId": p["user"],
            "event": "Order Completed",
            "messageId": f"{mid}-3",
            "properties": {"revenue": 40, "comment": p["prop"]},
        },
        {"type": "track", "userId": p["user"], "properties": {"x": p["prop"]}},  # refused
    ]


def raw_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every record's raw key and value in every partition of ``topic``, from offset 0 to
    the end (the partition's EOF: Tansu's high watermark may stop at a batch's base offset)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[bytes] = []
        ended: set[int] = set()
        while ended != set(partitions):
            msg = consumer.poll(10)
            assert msg is not None, f"{topic}: no end of partition after {len(out) // 2} records"
            error = msg.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                ended.add(msg.partition())
            else:
                out += [msg.key() or b"", msg.value() or b""]
        return out
    finally:
        consumer.close()


def readable(log: Any) -> bytes:
    """What the log gives its readers (records opened, the erased skipped), as one blob."""
    from segflow.spec.events import encode_event

    found = [log.read(p, 0, 100_000) for p in range(log.partitions)]
    letters = [d.payload for d in log.dead_letters(limit=10_000)]
    return b"".join([*(encode_event(r.event) for rs in found for r in rs), *letters])


def files_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def holds(blob: bytes, needle: str) -> bool:
    return needle.encode() in blob or needle.upper().encode() in blob


def test_a_deleted_person_is_readable_nowhere_on_kafka(
    composed: Callable[..., Any], kafka_broker: Broker
) -> None:
    from segflow.config import load_settings
    from segflow.log.drivers import open_event_log

    topic = f"canary-{uuid.uuid4().hex[:8]}"
    log_settings = {"driver": "kafka", "bootstrap_servers": kafka_broker.bootstrap,
                    "topic": topic, "partitions": 2}  # fmt: skip
    parts = composed(
        log=log_settings,
        stream={"group": f"p-{uuid.uuid4().hex[:8]}", "rocksdb_compression": "none"},
    )
    shredder = parts.runtime.log.shredder
    assert shredder is not None  # serve seals the records
    assert parts.parts.segments.put_segment("buyers", 'did "Order Completed"').version == 1
    exports = parts.data / "exports"
    parts.parts.activation.create_destination(
        {
            "name": "files",
            "kind": "file",
            "directory": str(exports),
            "subscriptions": [{"segment": "buyers", "traits": ["email"]}],
        }
    )
    canary, control = person("canary"), person("control")
    for p in (canary, control):
        result = parts.ingest(*traffic(p))
        assert result.accepted == 3 and len(result.refused) == 1
    parts.settled()
    for p in (canary, control):
        parts.wait(lambda p=p: (f := parts.profile("user_id", p["user"])) and f.members)
    canary_key = shredder.table.keys_for([shredder.name("user_id", canary["user"])])
    [(_, key)] = canary_key.values()
    assert parts.parts.activation.snapshot("files", "buyers")
    assert holds(files_under(exports), canary["email"])
    before = readable(parts.runtime.log)
    assert holds(before, canary["prop"]) and holds(before, canary["trait"])

    reg = parts.regulate("delete", ("email", canary["email"]))
    assert reg.status == "finished", reg.error
    counts = reg.result["counts"]
    assert counts["log.keys"] == 2 and counts["log.dead_letters"] == 1, counts
    assert counts["state.profiles"] == 1 and counts["warehouse.events"] == 3, counts
    assert "compacted_ms" in reg.result

    needles = [canary[k] for k in ("user", "anon", "email", "prop", "trait")]
    topics = (topic, f"{topic}.dead-letters")
    raw = b"".join(b for t in topics for b in raw_topic(kafka_broker.bootstrap, t))
    assert raw.count(b"\xc1\x01") >= 8  # the records are there, sealed
    for name, blob in (
        ("raw topic records", raw),
        ("this process's log", readable(parts.runtime.log)),
        ("the data directory", files_under(parts.data)),
    ):
        assert [n for n in needles if holds(blob, n)] == [], name
    assert key not in files_under(parts.data)  # the key left no byte in keys.sqlite

    # a fresh reader (another process: its own caches) reads no canary either
    settings = parts.runtime.settings
    fresh = open_event_log(load_settings(env={}, overrides={
        "server": {"data_dir": str(parts.data)}, "log": log_settings}))  # fmt: skip
    try:
        again = readable(fresh)
    finally:
        fresh.close()
    assert [n for n in needles if holds(again, n)] == []
    # the control is intact and readable: in the log, the state, the warehouse, the export
    for blob in (again, readable(parts.runtime.log)):
        assert all(holds(blob, control[k]) for k in ("user", "anon", "email", "prop", "trait"))
    assert settings.log.driver == "kafka"
    assert parts.profile("user_id", canary["user"]) is None
    assert parts.profile("user_id", control["user"]).members == ["buyers"]
    assert parts.warehouse(
        "SELECT count(*) FROM events WHERE user_id = ? OR anonymous_id = ?",
        control["user"],
        control["anon"],
    ) == [(3,)]
    assert holds(files_under(parts.data), control["prop"])


def test_a_regulation_passes_records_erased_at_the_end_of_a_partition(
    composed: Callable[..., Any], kafka_broker: Broker
) -> None:
    """A record whose key went before any consumer read it (an event in flight while its
    person was shredded) is skipped by every reader, so no consumer's offset passes it: the
    next regulation's barriers stop before it instead of waiting for it."""
    from segflow.spec import Event

    parts = composed(
        log={
            "driver": "kafka",
            "bootstrap_servers": kafka_broker.bootstrap,
            "topic": f"tail-{uuid.uuid4().hex[:8]}",
            "partitions": 1,
        },
        stream={"group": f"p-{uuid.uuid4().hex[:8]}"},
        privacy={"step_timeout_s": 15.0},
    )
    ann, bob = person("ann"), person("bob")
    parts.ingest(*traffic(ann)[:3], *traffic(bob)[:3])
    parts.settled()
    processor = next(s for s in parts.started if s.name == "processor")
    processor.stop()
    late = Event(type="track", message_id="late", source_id=parts.source.id, timestamp_ms=1,
                 received_at_ms=1, user_id=ann["user"], event="Order Completed")  # fmt: skip
    [position] = parts.runtime.log.append([late])
    assert parts.runtime.log.shred([("user_id", ann["user"])]) == 1
    assert parts.runtime.log.read(*position) == []  # erased before anyone read it
    processor.start()

    reg = parts.regulate("delete", ("user_id", bob["user"]))
    assert reg.status == "finished", reg.error
    assert parts.profile("user_id", bob["user"]) is None
    assert parts.profile("user_id", ann["user"]) is not None  # derived state stays
