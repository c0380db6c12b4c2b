"""Random access to Kafka partitions: ``read(partition, offset, n)`` over one consumer.

The log protocol reads by position (the processor and the loader keep their own offsets, in
their own stores, so their state and offsets commit together). A :class:`TopicReader` holds
one consumer **outside any group** (manual assignment, nothing committed); every partition it
was asked for stays assigned and fetching, and what arrives is sorted into per-partition
buffers, so sequential reads of many partitions cost one fetch stream, and a read at another
offset repositions only that partition. Not thread-safe: the driver keeps one per thread.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from segflow.log.base import Record
from segflow.spec.events import decode_event

_BUFFER_CAP = 20_000  # records buffered per partition before it is paused
TopicKey = tuple[str, int]


class TopicReader:
    """See the module docstring. ``max_wait_s`` bounds a read that waits for records the
    partition is known to hold."""

    def __init__(self, config: Mapping[str, Any], *, max_wait_s: float = 5.0) -> None:
        self.consumer = Consumer(
            {
                **config,
                "group.id": "segflow-reader",  # required by the client; never joined or committed
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 20,
            }
        )
        self.max_wait_s = max_wait_s
        self.next: dict[TopicKey, int] = {}  # next offset the consumer will hand us
        self.buffers: dict[TopicKey, deque[tuple[int, bytes]]] = {}
        self.paused: set[TopicKey] = set()

    # -- positioning ---------------------------------------------------------------------------
    def _seek(self, key: TopicKey, offset: int) -> None:
        tp = TopicPartition(key[0], key[1], offset)
        if key in self.next:
            self.consumer.incremental_unassign([TopicPartition(key[0], key[1])])
        self.consumer.incremental_assign([tp])
        self.next[key] = offset
        self.buffers[key] = deque()
        self.paused.discard(key)

    def _position(self, key: TopicKey, offset: int) -> deque[tuple[int, bytes]]:
        """The buffer of ``key`` starting at ``offset`` (repositioning when it cannot)."""
        buf = self.buffers.get(key)
        if buf is None:
            self._seek(key, offset)
            return self.buffers[key]
        while buf and buf[0][0] < offset:
            buf.popleft()
        if (buf and buf[0][0] > offset) or (not buf and self.next[key] != offset):
            self._seek(key, offset)
            return self.buffers[key]
        if key in self.paused and len(buf) < _BUFFER_CAP // 2:
            self.consumer.resume([TopicPartition(*key)])
            self.paused.discard(key)
        return buf

    # -- fetching ------------------------------------------------------------------------------
    def _pump(self, want: TopicKey, count: int, known_end: int) -> None:
        """Fetch until ``want`` has ``count`` buffered records or is caught up: its next offset
        reached the high watermark of the latest fetch response (and ``known_end``, the end
        this process appended up to), or ``max_wait_s`` passed."""
        deadline = time.monotonic() + self.max_wait_s
        tp = TopicPartition(*want)
        buf = self.buffers[want]
        while len(buf) < count:
            first = self.consumer.poll(0.0 if buf else 0.005)
            if first is not None:
                for msg in (first, *self.consumer.consume(10_000, 0)):
                    self._take(msg)
                continue
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and self.next[want] >= max(high, known_end):
                return
            if time.monotonic() > deadline:
                return

    def _take(self, msg: Any) -> None:
        if msg.error() is not None:
            return  # partition EOF and transient fetch errors: the next read fetches again
        key = (msg.topic(), msg.partition())
        offset = msg.offset()
        expected = self.next.get(key)
        if expected is None or offset < expected:
            return  # a partition we repositioned since: stale
        buf = self.buffers[key]
        buf.append((offset, msg.value() or b""))
        self.next[key] = offset + 1
        if len(buf) >= _BUFFER_CAP and key not in self.paused:
            self.consumer.pause([TopicPartition(*key)])
            self.paused.add(key)

    # -- the reads -----------------------------------------------------------------------------
    def raw(
        self, topic: str, partition: int, offset: int, count: int, known_end: int = 0
    ) -> list[tuple[int, bytes]]:
        """Up to ``count`` ``(offset, value)`` pairs of a partition from ``offset`` on."""
        key = (topic, partition)
        buf = self._position(key, offset)
        if len(buf) < count:
            self._pump(key, count, known_end)
        return [buf[i] for i in range(min(count, len(buf)))]

    def read(
        self, topic: str, partition: int, offset: int, count: int, known_end: int = 0
    ) -> list[Record]:
        """Up to ``count`` events of a partition from ``offset`` on, decoded."""
        return [
            Record(partition, off, decode_event(value))
            for off, value in self.raw(topic, partition, offset, count, known_end)
        ]

    def fetch(self, topic: str, partition: int, start: int, end: int) -> list[tuple[int, bytes]]:
        """Every record with ``start <= offset < end`` that the partition holds."""
        out: list[tuple[int, bytes]] = []
        offset = start
        while offset < end:
            got = self.raw(topic, partition, offset, min(10_000, end - offset), end)
            if not got:
                break
            out.extend(p for p in got if p[0] < end)
            offset = got[-1][0] + 1
        return out

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next record of the partition will get.

        The broker's high watermark, corrected for brokers (Tansu 0.6) that answer the base
        offset of the last batch + 1: the last batch is read and its last offset + 1 taken.
        """
        _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= 0:
            return 0
        last = self.raw(topic, partition, high - 1, 10_000, high)
        end = last[-1][0] + 1 if last else high
        while more := self.raw(topic, partition, end, 10_000):
            end = more[-1][0] + 1
        return end

    def close(self) -> None:
        self.consumer.close()


__all__ = ["TopicReader"]
