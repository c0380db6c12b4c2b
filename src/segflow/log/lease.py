"""Which partitions this process owns: a member of a Kafka consumer group.

Processors share the log's partitions through a consumer group (``stream.group``, default
``processor``): the broker assigns each member a share and rebalances when a member joins,
leaves, or dies (no heartbeat within ``session_timeout_ms``). The lease consumes nothing (its
partitions are paused): reading is done by position through the log (the processor's offsets
live in its state store, committed with its state), so a rebalance can never lose or double a
record, only move who reads it next. The member also commits the group's offsets (mirrored
after each state commit, for lag monitoring): a group with live members refuses commits from
outside it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

logger = logging.getLogger("segflow.log.lease")


class PartitionLease:
    """A consumer-group member whose assignment says which partitions to process.

    A ``segflow.server.services.Service``: :meth:`start` joins the group (a thread keeps the
    membership alive), :meth:`stop` leaves it (its partitions move to the other members at once).
    """

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        group: str,
        *,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.name = f"partition-lease:{group}"
        self.topic = topic
        self.group = group
        self.consumer = Consumer(
            {
                **config,
                "group.id": group,
                "enable.auto.commit": False,
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(100, session_timeout_ms // 10),
            }
        )
        self._owned: tuple[int, ...] = ()
        self._to_commit: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.generations = 0  # assignments received (tests and status)

    @property
    def running(self) -> bool:
        """Started and not stopped (a member of the group, or joining it)."""
        return self._thread is not None and not self._stop.is_set()

    def partitions(self) -> Sequence[int]:
        """The partitions assigned to this member now (empty before the first assignment)."""
        return self._owned

    def _assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        consumer.pause(parts)  # never fetch: the processor reads by position
        with self._lock:
            self._owned = tuple(sorted(p.partition for p in parts))
            self.generations += 1
        logger.info("%s owns partitions %s", self.group, self._owned)

    def _revoked(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        with self._lock:
            gone = {p.partition for p in parts}
            self._owned = tuple(p for p in self._owned if p not in gone)
        logger.info("%s gave up partitions %s", self.group, sorted(gone))

    def start(self) -> None:
        if self._thread is not None:
            return
        self.consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def request_commit(self, offsets: dict[int, int]) -> None:
        """Commit ``offsets`` from the member's own thread (the client serialises calls on one
        consumer, and its polling thread would starve a commit made from another)."""
        with self._lock:
            for p, o in offsets.items():
                self._to_commit[p] = max(o, self._to_commit.get(p, 0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.consumer.poll(0.1)  # serves the group protocol; the partitions are paused
            with self._lock:
                todo, self._to_commit = self._to_commit, {}
            if todo:
                parts = [TopicPartition(self.topic, p, o) for p, o in sorted(todo.items())]
                try:
                    self.consumer.commit(offsets=parts, asynchronous=False)
                except KafkaException:  # e.g. during a rebalance: retried with the next poll
                    logger.info("offset commit of %s failed; retrying", self.group, exc_info=True)
                    self.request_commit(todo)

    def stop(self) -> None:
        """Leave the group (the others take the partitions over without waiting for a timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        with self._lock:
            self._owned = ()
        self.consumer.close()
