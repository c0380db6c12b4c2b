"""The log interface: topics are implicit (one event log per data directory), partitions and
offsets are Kafka's model, consumer groups commit offsets.

Drivers: ``segflow.log.sqlite`` (embedded default) and ``segflow.log.kafka`` implement the same
protocol (one contract test suite runs against both), so nothing above this module knows which
driver runs; ``segflow.log.drivers.open_event_log`` opens the configured one.

>>> partition_for("user_42", 8) == partition_for("user_42", 8)
True
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import msgspec

from segflow.spec.events import Event

Position = tuple[int, int]
"""``(partition, offset)`` of an appended record."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A refused payload kept with its reason (bad input is never silently dropped)."""

    source_id: str
    received_at_ms: int
    field: str
    reason: str
    payload: bytes
    message_id: str | None = None
    id: int | None = None


class Record(msgspec.Struct, frozen=True):
    """One event at its place in the log."""

    partition: int
    offset: int
    event: Event


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of an identity key (crc32, like Kafka's murmur2 it is stable across runs)."""
    return zlib.crc32(key.encode()) % partitions


class LogReader(Protocol):
    """What reading the log needs: the partitions and a record range (the processor, the
    backfill, the profile API's timelines). ``EventLog`` is one; so is any test double."""

    @property
    def partitions(self) -> int: ...

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        """Records of ``partition`` with offset >= ``offset``, in offset order."""
        ...


def read_positions(log: LogReader, positions: Sequence[Position]) -> list[Record]:
    """The records at ``positions`` that are still in the log (retention or an erasure may
    have removed some), in the order given; one query per partition where the log can
    (``read_at``), else one ``read`` per position.

    >>> class Two:
    ...     partitions = 1
    ...     def read(self, partition, offset, max_records=1000):
    ...         return [Record(0, o, None) for o in (3, 5) if o >= offset][:max_records]
    >>> [r.offset for r in read_positions(Two(), [(0, 5), (0, 4), (0, 3)])]
    [5, 3]
    """
    found = read_found(log, positions)
    return [found[p] for p in positions if p in found]


def read_found(log: LogReader, positions: Sequence[Position]) -> dict[Position, Record]:
    """The records at ``positions`` that are still in the log, by position (one read for
    many profiles' timelines: a backfill step reads its profiles' events at once)."""
    read_at = getattr(log, "read_at", None)
    if read_at is not None:
        return {(r.partition, r.offset): r for r in read_at(positions)}
    out: dict[Position, Record] = {}
    for partition, offset in positions:
        got = log.read(partition, offset, 1)
        if got and got[0].offset == offset:
            out[(partition, offset)] = got[0]
    return out


class EventLog(Protocol):
    """What the collector writes to and what the processor and loader read from."""

    @property
    def partitions(self) -> int: ...

    def append(self, events: Sequence[Event]) -> list[Position | None]:
        """Durably append (fsynced before return); returns ``(partition, offset)`` per event.

        Deduplication is part of the append and atomic with it: an event whose
        ``(source_id, message_id)`` was already appended within the dedupe window (default
        24 h) is not stored again and gets ``None`` in the result (it is acknowledged; the
        first copy stays where it was). Duplicates inside one call are handled the same way.

        Raises ``segflow.errors.TransientError`` when the write fails (disk full, I/O error).
        """
        ...

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        """Records of ``partition`` with offset >= ``offset``, in offset order."""
        ...

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next appended record will get."""
        ...

    def committed(self, group: str) -> dict[int, int]:
        """Per partition, the next offset ``group`` will read (0 when never committed)."""
        ...

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        """Record that ``group`` has consumed everything before ``offsets[p]``."""
        ...

    def close(self) -> None: ...


class ServedLog(EventLog, Protocol):
    """What ``segflow serve`` needs beyond :class:`EventLog`: asynchronous appends for the
    collector (with dead letters), health figures and retention."""

    @property
    def pending_events(self) -> int: ...

    def submit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[DeadLetter] = (),
        payloads: Sequence[bytes] | None = None,
    ) -> Future[list[Position | None]]:
        """Queue an append; the future resolves once it is durable (see ``append``)."""
        ...

    def partition_of(self, event: Event) -> int: ...

    def read_encoded(
        self, partition: int, offset: int, max_records: int = 1000
    ) -> list[tuple[int, bytes]]:
        """:meth:`read` undecoded: ``(offset, encoded event)`` pairs, for a reader that
        decodes only the fields it reads (the processor: :mod:`segflow.stream.decode`)."""
        ...

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None: ...

    def dead_letters(self, *, source_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def apply_retention(
        self, *, older_than_ms: int = 0, required_groups: Sequence[str] = ()
    ) -> int: ...
