"""In-memory stand-ins for the log and the change feed (tests, docs, benchmarks).

They implement :class:`segflow.log.base.EventLog` and :class:`segflow.spec.ChangeFeed` with
lists, so the loader can be exercised without the SQLite log or the processor.

>>> from segflow.spec import Event, MembershipChange
>>> log = MemoryEventLog(partitions=1)
>>> log.append([Event(type="track", message_id="m", source_id="s", timestamp_ms=0, received_at_ms=0)])
[(0, 0)]
>>> feed = ListChangeFeed()
>>> feed.add(MembershipChange(profile_id="p", segment="s", kind="entered", at_ms=0, sequence=1))
1
>>> [seq for seq, _ in feed.read(0)]
[1]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from segflow.log.base import Record, partition_for
from segflow.spec.changes import AnyChange
from segflow.spec.events import Event


class MemoryEventLog:
    """A partitioned, offset-addressed log held in lists (not durable)."""

    def __init__(self, partitions: int = 4) -> None:
        self._parts: list[list[Record]] = [[] for _ in range(partitions)]
        self._committed: dict[str, dict[int, int]] = {}
        self._lock = threading.Lock()

    @property
    def partitions(self) -> int:
        return len(self._parts)

    def append(self, events: Sequence[Event]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        with self._lock:
            for e in events:
                p = partition_for(e.identity_key, self.partitions)
                rec = Record(p, len(self._parts[p]), e)
                self._parts[p].append(rec)
                out.append((p, rec.offset))
        return out

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self._parts[partition][offset : offset + max_records]

    def end_offsets(self) -> dict[int, int]:
        return {p: len(part) for p, part in enumerate(self._parts)}

    def committed(self, group: str) -> dict[int, int]:
        got = self._committed.get(group, {})
        return {p: got.get(p, 0) for p in range(self.partitions)}

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        self._committed.setdefault(group, {}).update(offsets)

    def close(self) -> None:
        return None


class ListChangeFeed:
    """A change feed backed by a list; sequence numbers start at 1."""

    def __init__(self) -> None:
        self._items: list[AnyChange] = []

    def add(self, change: AnyChange) -> int:
        self._items.append(change)
        return len(self._items)

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        return [
            (i + 1, c)
            for i, c in enumerate(self._items[after_seq : after_seq + limit], start=after_seq)
        ]

    def last_seq(self) -> int:
        return len(self._items)
