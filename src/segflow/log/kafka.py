"""The Kafka log driver (confluent-kafka): the event log on any Kafka-protocol broker.

Mapping onto :class:`~segflow.log.base.EventLog`:

- the log is one topic (``log.topic``, default ``segflow.events``) whose partitions are the
  log's partitions; an event goes to ``partition_for(identity_key)`` (the same crc32 as the
  embedded driver, chosen by segflow, not by the client's partitioner), the value the
  msgpack-encoded event (sealed, below), the Kafka key its identity key (none when sealed);
- offsets are Kafka's offsets; ``committed`` / ``commit`` are the consumer group's offsets;
- the producer uses ``acks=all`` and ``enable.idempotence``: a future resolves (and the
  collector answers 200) only after every in-sync replica has the record; retries never
  duplicate or reorder within a partition;
- dedupe of ``(source_id, message_id)``: a reservation table the collectors share
  (:mod:`segflow.log.reservations`: a SQLite file on one host, or PostgreSQL with
  ``shared.dsn``), reserved before the produce, confirmed after the ack;
- dead letters: the topic ``{topic}.dead-letters`` (one partition, msgpack ``DeadLetter``);
- crypto-shredding (with a :class:`~segflow.log.shredding.Shredder`, as ``segflow serve``
  opens it): every value is sealed under its person's key (dead letters under keys of their
  own) and records carry no Kafka key (the identity key would name the person); the keys a
  group of appends needs (its new people, its dead letters) are made in one commit of the key
  table, after the reservation and before the produce, so no record names a key that is not
  durable (docs/privacy.md, "Kafka: crypto-shredding"); reads open
  them, skip the records whose key was deleted (``erased`` in :meth:`KafkaEventLog.stats`) and
  read plain records written before sealing as they are. :meth:`KafkaEventLog.shred` is a
  deletion regulation's erasure (docs/privacy.md, "Kafka");
- retention is the broker's (``retention.ms`` on the topic): ``apply_retention`` does nothing.

Consumer groups (:class:`PartitionLease`, in :mod:`segflow.log.lease`) give processors their
partitions and rebalance them when one joins or dies.

Broker quirk handled here: Tansu 0.6 answers ListOffsets(latest) with the base offset of the
partition's last record batch + 1, not the end. :meth:`end_offsets` therefore reads the last
batch and takes its last offset + 1 (on Apache Kafka that batch is one record: same result).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from segflow.clock import Clock, WallClock
from segflow.log.base import DeadLetter, Position, Record
from segflow.log.base import partition_for as _partition_for
from segflow.log.exceptions import (
    DuplicateInFlight,
    LogWriteFailed,
)
from segflow.log.kafka_reader import TopicReader
from segflow.log.lease import PartitionLease
from segflow.log.queued import PendingAppend, QueuedAppends
from segflow.log.reservations import Reservation, ReservationTable, dedupe_key
from segflow.log.shredding import Shredder
from segflow.spec.events import Event, decode_event

logger = logging.getLogger("segflow.log.kafka")
_dead_encoder = msgspec.msgpack.Encoder()
_dead_decoder = msgspec.msgpack.Decoder(DeadLetter)


_Records = list[tuple[int, bytes, bytes | None]]  # (event index, value, Kafka key)


def _payload(value: bytes) -> bytes:
    return _dead_decoder.decode(value).payload


class _Append(PendingAppend):
    """One caller's append: what to produce, what came back, the caller's future."""

    def __init__(
        self, events: Sequence[Event], payloads: list[bytes], dead: Sequence[DeadLetter]
    ) -> None:
        super().__init__(events, payloads, dead)
        self.positions: list[Position | None] = [None] * len(events)
        self.keys: list[bytes] = []  # reserved (fresh) keys
        self.outstanding = 0
        self.error: BaseException | None = None


class KafkaEventLog(QueuedAppends):
    """The Kafka :class:`~segflow.log.base.EventLog` driver (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        dedupe: ReservationTable,
        topic: str = "segflow.events",
        partitions: int = 8,
        config: Mapping[str, str] | None = None,
        max_pending_events: int = 200_000,
        delivery_timeout_ms: int = 30_000,
        clock: Clock | None = None,
        shredder: Shredder | None = None,
    ) -> None:
        self.topic = topic
        self.shredder = shredder
        self.dead_topic = f"{topic}.dead-letters"
        self.base_config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            **(config or {}),
        }
        self._dedupe = dedupe
        self._clock = clock or WallClock()
        self._init_appends(
            partitions=self._ensure_topics(partitions),
            max_pending=max_pending_events,
            waiting_for="the broker",
        )
        self._producer = Producer(
            {
                **self.base_config,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 2,
                "message.timeout.ms": delivery_timeout_ms,
            }
        )
        self._done: queue.SimpleQueue[_Append] = queue.SimpleQueue()
        self._readers = threading.local()
        self._all_readers: list[TopicReader] = []
        self._appended: dict[int, int] = {}  # end offsets this process appended up to
        self._groups: dict[str, Consumer] = {}
        self._members: dict[str, list[PartitionLease]] = {}  # a group's commits go through one
        self._lock = threading.Lock()
        self._writer_done = False
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-log-acks", daemon=True)
        self._start_writer("kafka-log-writer", max_events=max_pending_events, max_appends=256)
        self._poller.start()

    # -- topics --------------------------------------------------------------------------------

    def _ensure_topics(self, partitions: int) -> int:
        """Create the topics when missing; the broker's partition count wins when they exist."""
        admin = AdminClient(self.base_config)
        existing = admin.list_topics(timeout=10).topics
        wanted = [
            NewTopic(t, num_partitions=n, replication_factor=-1)
            for t, n in ((self.topic, partitions), (self.dead_topic, 1))
            if t not in existing
        ]
        if wanted:
            for topic, future in admin.create_topics(wanted, operation_timeout=10).items():
                try:
                    future.result()
                except KafkaException as exc:  # created meanwhile by another process
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
                    logger.debug("topic %s already exists", topic)
            existing = admin.list_topics(timeout=10).topics
        return len(existing[self.topic].partitions)

    # -- properties ----------------------------------------------------------------------------

    # -- appending -----------------------------------------------------------------------------

    def _new_pending(
        self, events: Sequence[Event], payloads: list[bytes], dead_letters: Sequence[DeadLetter]
    ) -> _Append:
        return _Append(events, payloads, dead_letters)

    def _write_group(self, group: list[_Append]) -> None:
        """Reserve the group's message ids (one transaction), seal what is fresh (one write to
        the key table for the whole group), then produce: every key a record names is
        durable before the record can reach the broker."""
        try:
            self._reserve(group)
        except Exception as exc:  # the reservation table failed: nothing was produced
            logger.exception("dedupe reservation failed")
            for pending in group:
                self._finish(pending, LogWriteFailed(f"the dedupe store failed: {exc}"))
            return
        live: list[_Append] = []
        for pending in group:
            if pending.error is not None:
                self._finish(pending, pending.error)
            else:
                live.append(pending)
        try:
            values = self._values(live)
        except Exception as exc:  # the key table failed: nothing was produced
            logger.exception("sealing failed")
            self._fail(live, LogWriteFailed(f"the key table failed: {exc}", retry_after_s=1.0))
            return
        for pending, (records, letters) in zip(live, values, strict=True):
            self._produce(pending, records, letters)

    def _fail(self, group: list[_Append], error: LogWriteFailed) -> None:
        """Answer ``error`` to appends that produced nothing, releasing their reservations."""
        try:
            self._dedupe.release([k for p in group for k in p.keys])
        except Exception:  # the retry is refused as in flight until the pending timeout
            logger.exception("could not release dedupe reservations")
        for pending in group:
            self._finish(pending, error)

    def _reserve(self, group: list[_Append]) -> None:
        """One reservation transaction for the whole group (like the embedded group commit)."""
        keys = [
            (dedupe_key(e.source_id, e.message_id), e.received_at_ms)
            for pending in group
            for e in pending.events
        ]
        states = iter(self._dedupe.reserve(keys, now_ms=self._clock.now_ms()))
        for pending in group:
            fresh: list[int] = []
            in_flight = False
            for i, _ in enumerate(pending.events):
                state = next(states)
                in_flight |= state is Reservation.IN_FLIGHT
                if state is Reservation.FRESH:
                    fresh.append(i)
            pending.keys = [
                dedupe_key(pending.events[i].source_id, pending.events[i].message_id) for i in fresh
            ]
            chosen = set(fresh)
            pending.positions = [
                (-1, -1) if i in chosen else None for i in range(len(pending.events))
            ]
            if in_flight:
                self._dedupe.release(pending.keys)
                pending.keys = []
                pending.error = DuplicateInFlight(
                    "a message with the same messageId is being stored by another request",
                    retry_after_s=1.0,
                )

    def _produce(self, pending: _Append, records: _Records, letters: list[bytes]) -> None:
        pending.outstanding = 1  # a guard, released below: callbacks may come while we produce
        try:
            for i, value, key in records:
                event = pending.events[i]
                partition = _partition_for(event.identity_key, self._partitions)
                self._send(self.topic, value, key, partition, pending, i)
            for value in letters:
                self._send(self.dead_topic, value, None, 0, pending, -1)
        except Exception as exc:  # a local produce error (e.g. a record too large)
            pending.error = pending.error or LogWriteFailed(f"the produce failed: {exc}")
        self._ack(pending)

    def _values(self, group: list[_Append]) -> list[tuple[_Records, list[bytes]]]:
        """Per append, its fresh records as ``(index, value, Kafka key)`` and its dead letters'
        values. With a shredder, sealed (keyless) in one :meth:`Shredder.seal
        <segflow.log.shredding.Shredder.seal>` for the whole group: the keys of its new people
        and dead letters made in one commit of the key table, which returns before anything
        is produced."""
        todo = [[i for i, p in enumerate(a.positions) if p is not None] for a in group]
        letters = [[_dead_encoder.encode(d) for d in a.dead_letters] for a in group]
        if self.shredder is None:
            return [
                ([(i, a.payloads[i], a.events[i].identity_key.encode()) for i in ids], dead)
                for a, ids, dead in zip(group, todo, letters, strict=True)
            ]
        events = [a.events[i] for a, ids in zip(group, todo, strict=True) for i in ids]
        payloads = [a.payloads[i] for a, ids in zip(group, todo, strict=True) for i in ids]
        sealed, sealed_letters = self.shredder.seal(
            events, payloads, [v for dead in letters for v in dead]
        )
        out: list[tuple[_Records, list[bytes]]] = []
        at = at_letter = 0
        for ids, dead in zip(todo, letters, strict=True):
            records: _Records = [
                (i, v, None) for i, v in zip(ids, sealed[at : at + len(ids)], strict=True)
            ]
            out.append((records, sealed_letters[at_letter : at_letter + len(dead)]))
            at += len(ids)
            at_letter += len(dead)
        return out

    def _send(
        self, topic: str, value: bytes, key: bytes | None, partition: int, pending: _Append, i: int
    ) -> None:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                pending.error = pending.error or LogWriteFailed(
                    f"the broker refused the append: {err.str()}", retry_after_s=1.0
                )
            elif i >= 0:
                position = (msg.partition() or 0, msg.offset() or 0)
                pending.positions[i] = position
                if position[1] >= self._appended.get(position[0], 0):
                    self._appended[position[0]] = position[1] + 1
            self._ack(pending)

        while True:
            try:
                with self._pending_lock:
                    pending.outstanding += 1
                self._producer.produce(
                    topic, value=value, key=key, partition=partition, on_delivery=delivered
                )
                return
            except BufferError:  # the client's queue is full: wait for acknowledgements
                with self._pending_lock:
                    pending.outstanding -= 1
                self._producer.poll(0.05)
            except BaseException:
                with self._pending_lock:
                    pending.outstanding -= 1
                raise

    def _ack(self, pending: _Append) -> None:
        with self._pending_lock:
            pending.outstanding -= 1
            done = pending.outstanding == 0
        if done:
            self._done.put(pending)

    def _poll_loop(self) -> None:
        while True:
            self._producer.poll(0.05)
            finished: list[_Append] = []
            while True:
                try:
                    finished.append(self._done.get_nowait())
                except queue.Empty:
                    break
            if finished:
                self._confirm(finished)
            if self._writer_done and self._producer_idle():
                return

    def _producer_idle(self) -> bool:
        return len(self._producer) == 0 and self._pending_events == 0 and self._done.empty()

    def _confirm(self, finished: list[_Append]) -> None:
        ok = [p for p in finished if p.error is None]
        try:
            self._dedupe.confirm([k for p in ok for k in p.keys])
        except Exception:  # stored but unconfirmed: a retry after the timeout is appended again
            logger.exception("could not confirm dedupe reservations")
        failed = [p for p in finished if p.error is not None]
        if failed:
            try:
                self._dedupe.release([k for p in failed for k in p.keys])
            except Exception:
                logger.exception("could not release dedupe reservations")
        for pending in finished:
            self._finish(pending, pending.error)

    def _finish(self, pending: _Append, error: BaseException | None) -> None:
        self._settle(pending, pending.positions if error is None else None, error)

    # -- dead letters --------------------------------------------------------------------------

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Durably record refused payloads (acks=all on the dead-letter topic)."""
        self.submit((), letters).result()

    def dead_letters(self, *, source_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters (of the last 10,000), newest first."""
        end = self._end_offset(self.dead_topic, 0)
        start = max(0, end - 10_000)
        out: list[DeadLetter] = []
        for offset, value in self._opened(self._reader().fetch(self.dead_topic, 0, start, end)):
            letter = msgspec.structs.replace(_dead_decoder.decode(value), id=offset + 1)
            if source_id is None or letter.source_id == source_id:
                out.append(letter)
        return out[::-1][:limit]

    # -- reading -------------------------------------------------------------------------------

    def _reader(self) -> TopicReader:
        reader: TopicReader | None = getattr(self._readers, "reader", None)
        if reader is None:
            reader = TopicReader(self.base_config)
            self._readers.reader = reader
            with self._lock:
                self._all_readers.append(reader)
        return reader

    def _opened(self, pairs: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """``(offset, value)`` pairs opened, without the erased ones."""
        if self.shredder is None:
            return pairs
        opened = self.shredder.open_many([v for _, v in pairs])
        return [(o, v) for (o, _), v in zip(pairs, opened, strict=True) if v is not None]

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        """Records of ``partition`` with offset >= ``offset``, in offset order (erased
        records skipped: a read returns nothing only when none is left to the end)."""
        pairs = self.read_encoded(partition, offset, max_records)
        return [Record(partition, o, decode_event(v)) for o, v in pairs]

    def read_encoded(
        self, partition: int, offset: int, max_records: int = 1000
    ) -> list[tuple[int, bytes]]:
        """:meth:`read` undecoded: ``(offset, encoded event)`` pairs (opened when sealed;
        erased records skipped), for a reader that decodes only the fields it reads (the
        processor: :mod:`segflow.stream.decode`)."""
        known_end = self._appended.get(partition, 0)
        reader = self._reader()
        while True:
            raw = reader.raw(self.topic, partition, offset, max_records, known_end)
            if not raw:
                return []
            found = list(self._opened(raw))
            if found:
                return found
            offset = raw[-1][0] + 1

    def readable_ends(self) -> dict[int, int]:
        """Per partition, the offset after its last readable record: the end offset, less
        the erased records at the end. A consumer's offset reaches it once it has read
        everything (they skip erased records, so the end itself may never be reached): a
        regulation's barrier."""
        return {p: self._readable_end(p, end) for p, end in self.end_offsets().items()}

    def _readable_end(self, partition: int, end: int) -> int:
        if self.shredder is None:
            return end
        window = 64
        while True:
            start = max(0, end - window)
            pairs = self._reader().fetch(self.topic, partition, start, end)
            opened = self.shredder.open_many([v for _, v in pairs], count=False)
            readable = [o for (o, _), v in zip(pairs, opened, strict=True) if v is not None]
            if readable:
                return readable[-1] + 1
            if start == 0:
                return 0
            window *= 8

    # -- shredding (deletion regulations) ------------------------------------------------------

    def shred(self, identifiers: Sequence[tuple[str, str]]) -> int:
        """Erase every record sealed under the keys of ``identifiers`` (``(type, value)``) by
        deleting the keys; returns how many keys were deleted."""
        if self.shredder is None:
            raise LogWriteFailed("this Kafka log does not seal its records: nothing to shred")
        return self.shredder.forget(identifiers)

    def shred_dead_letters(self, holds: Callable[[bytes], bool], scan: int = 100_000) -> int:
        """Erase the dead letters (of the last ``scan``) whose payload ``holds`` one of a
        person's identifiers, by deleting their keys; returns how many."""
        if self.shredder is None:
            raise LogWriteFailed("this Kafka log does not seal its records: nothing to shred")
        end = self._end_offset(self.dead_topic, 0)
        pairs = self._reader().fetch(self.dead_topic, 0, max(0, end - scan), end)
        ids = []
        for (_, sealed), (_, value) in zip(pairs, self._opened_all(pairs), strict=True):
            key_id = self.shredder.sealed_id(sealed)
            if value is not None and key_id is not None and holds(_payload(value)):
                ids.append(key_id)
        return self.shredder.forget_ids(ids)

    def _opened_all(self, pairs: list[tuple[int, bytes]]) -> list[tuple[int, bytes | None]]:
        assert self.shredder is not None
        opened = self.shredder.open_many([v for _, v in pairs])
        return [(o, v) for (o, _), v in zip(pairs, opened, strict=True)]

    def compact(self) -> None:
        """Leave no byte of a deleted key in the key table's storage (the topic itself only
        holds sealed records)."""
        if self.shredder is not None:
            self.shredder.table.compact()

    def _end_offset(self, topic: str, partition: int) -> int:
        return self._reader().end_offset(topic, partition)

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next record will get (see the broker quirk above)."""
        return {p: self._end_offset(self.topic, p) for p in range(self._partitions)}

    def _group(self, group: str) -> Consumer:
        with self._lock:
            consumer = self._groups.get(group)
            if consumer is None:
                consumer = Consumer(
                    {**self.base_config, "group.id": group, "enable.auto.commit": False}
                )
                self._groups[group] = consumer
            return consumer

    def committed(self, group: str) -> dict[int, int]:
        parts = [TopicPartition(self.topic, p) for p in range(self._partitions)]
        found = self._group(group).committed(parts, timeout=10)
        return {tp.partition: max(0, tp.offset) for tp in found}

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        """Record that ``group`` consumed everything before ``offsets[p]`` (never moves back);
        through its member in this process when it has one (a group with live members refuses
        commits from outside it)."""
        if not offsets:
            return
        member = next((m for m in self._members.get(group, ()) if m.running), None)
        try:
            done = self._group(group).committed(
                [TopicPartition(self.topic, p) for p in sorted(offsets)], timeout=5
            )
            before = {tp.partition: tp.offset for tp in done}
            parts = [
                TopicPartition(self.topic, p, o)
                for p, o in sorted(offsets.items())
                if o > before.get(p, -1)  # never moves back (two members during a rebalance)
            ]
            if parts and member is not None:  # made by the member's thread, asynchronously
                member.request_commit({tp.partition: tp.offset for tp in parts})
            elif parts:
                self._group(group).commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            raise LogWriteFailed(f"the offset commit failed: {exc}", retry_after_s=1.0) from exc

    def lease(self, group: str, *, session_timeout_ms: int = 10_000) -> PartitionLease:
        """A member of consumer group ``group`` on the log's topic (start it to join); the
        group's offset commits from this process then go through it."""
        member = PartitionLease(
            self.base_config, self.topic, group, session_timeout_ms=session_timeout_ms
        )
        self._members.setdefault(group, []).append(member)
        return member

    def apply_retention(
        self, *, older_than_ms: int = 0, required_groups: Sequence[str] = ()
    ) -> int:
        """Retention is the broker's (``retention.ms`` on the topic): nothing to do here."""
        return 0

    def stats(self) -> dict[str, Any]:
        """Counts for health pages: end offsets, dead letters, pending appends."""
        return {
            "end_offsets": self.end_offsets(),
            "dead_letters": self._end_offset(self.dead_topic, 0),
            "pending_events": self._pending_events,
            "erased": 0 if self.shredder is None else self.shredder.erased,
        }

    def close(self) -> None:
        """Wait for every queued append's acknowledgement, then close the clients."""
        if self._closed:
            return
        self._stop_writer()  # refuse new appends; the queued ones still go out
        self._writer_done = True
        self._poller.join()
        self._producer.flush(10)
        del self._producer  # the client's threads and connections go with it
        with self._lock:
            for consumer in self._groups.values():
                consumer.close()
            for reader in self._all_readers:
                reader.close()
            self._groups.clear()
            self._all_readers.clear()
        self._dedupe.close()
        if self.shredder is not None:
            self.shredder.table.close()


__all__ = ["KafkaEventLog"]
