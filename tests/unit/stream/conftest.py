"""Fixtures for the processor's unit tests: an in-memory EventLog and an event factory."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from segflow.log.base import Record, partition_for
from segflow.spec import Event


class MemoryLog:
    """A small in-memory ``EventLog`` (partitioned by identity key, offsets per partition)."""

    def __init__(self, partitions: int = 4) -> None:
        self._partitions = partitions
        self.records: list[list[Record]] = [[] for _ in range(partitions)]
        self.groups: dict[str, dict[int, int]] = {}

    @property
    def partitions(self) -> int:
        return self._partitions

    def append(self, events: Sequence[Event]) -> list[tuple[int, int]]:
        out = []
        for event in events:
            p = partition_for(event.identity_key, self._partitions)
            rec = Record(p, len(self.records[p]), event)
            self.records[p].append(rec)
            out.append((p, rec.offset))
        return out

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self.records[partition][offset : offset + max_records]

    def end_offsets(self) -> dict[int, int]:
        return {p: len(r) for p, r in enumerate(self.records)}

    def committed(self, group: str) -> dict[int, int]:
        return dict(self.groups.get(group, {}))

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        self.groups.setdefault(group, {}).update(offsets)

    def close(self) -> None:
        return None


EventFactory = Callable[..., Event]


@pytest.fixture
def memory_log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def make_event() -> EventFactory:
    counter = itertools.count()

    def make(type: str = "track", ts: int = 1_000, **fields: Any) -> Event:
        n = next(counter)
        fields.setdefault("message_id", f"m{n:05d}")
        return Event(type=type, source_id="web", timestamp_ms=ts, received_at_ms=ts, **fields)

    return make


@pytest.fixture(autouse=True, params=["store", "working-set"])
def working_set(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every processor test runs twice: reading its store only, and with a small working set
    of committed profiles and owners kept between transactions (as on a store only this
    process writes: RocksDB, memory), evictions included."""
    from segflow.stream import processor
    from segflow.stream.batch import WorkingSet

    original = processor.Processor.__init__
    small = request.param == "working-set"

    def init(self: processor.Processor, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.working = WorkingSet(max_profiles=4, max_owners=8) if small else None

    monkeypatch.setattr(processor.Processor, "__init__", init)
    return str(request.param)
